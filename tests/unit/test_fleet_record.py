"""fleet.json is written outside the record's lock, and never goes back to an older state.

Races are forced, not waited for: the step between taking a snapshot and writing it
(``FleetRecord._store``) is held back in one thread until another has recorded a newer
state, which is the interleaving that would let an older snapshot overwrite a newer one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import atomicwrite, fleet_record
from agent.errors import RunDirError
from agent.fleet_record import FLEET_FILE, FleetRecord, HostResult, _Snapshot, load_fleet
from agent.outcome import ExitCode

WAIT = 10.0  # a bound on a hang, never reached when the code is right

STARTED = HostResult("a", "10.0.0.1:22", "ssh://u@10.0.0.1:22", "running")
ENDED = HostResult("a", "10.0.0.1:22", "ssh://u@10.0.0.1:22", "succeeded", ExitCode.OK)
OTHER_STARTED = HostResult("b", "10.0.0.2:22", "ssh://u@10.0.0.2:22", "running")


def _record(tmp_path: Path) -> FleetRecord:
    return FleetRecord(tmp_path / FLEET_FILE, "f1", "run", {}, {})


def _overtaken(
    record: FleetRecord,
    monkeypatch: pytest.MonkeyPatch,
    first: Callable[[], None],
    second: Callable[[], None],
) -> None:
    """Run ``first`` in a thread, hold its write back until ``second`` has returned."""
    store = record._store
    taken, overtaken = threading.Event(), threading.Event()
    calls = 0

    def held_back_once(snapshot: _Snapshot) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # first's: its snapshot is taken, its write not yet begun
            taken.set()
            assert overtaken.wait(WAIT)
        store(snapshot)

    monkeypatch.setattr(record, "_store", held_back_once)
    thread = threading.Thread(target=first)
    thread.start()
    assert taken.wait(WAIT)
    second()
    overtaken.set()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_the_newest_snapshot_wins_when_writes_race(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host's start whose write is overtaken by its end leaves fleet.json saying it ended."""
    record = _record(tmp_path)
    _overtaken(
        record,
        monkeypatch,
        lambda: record.update(STARTED, durable=False),
        lambda: record.update(ENDED),
    )
    assert [host.status for host in load_fleet(tmp_path).hosts] == ["succeeded"]


def test_an_older_snapshot_is_not_written_after_a_newer_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a newer state is on disk, the older snapshot that was waiting is never written."""
    record = _record(tmp_path)
    replace = atomicwrite.replace_text
    written: list[str] = []

    def replace_and_note(path: Path, text: str, *, durable: bool) -> None:
        written.append(json.loads(text)["hosts"][0]["status"])
        replace(path, text, durable=durable)

    monkeypatch.setattr(fleet_record, "replace_text", replace_and_note)
    _overtaken(
        record,
        monkeypatch,
        lambda: record.update(STARTED, durable=False),
        lambda: record.update(ENDED),
    )
    assert written == ["succeeded"]


def test_a_durable_change_overtaken_by_a_write_without_fsync_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host's end overtaken by another host's start (not fsync'd) still gets its fsync."""
    record = _record(tmp_path)
    synced: list[Path] = []
    monkeypatch.setattr(fleet_record, "fsync_path", synced.append)
    _overtaken(
        record,
        monkeypatch,
        lambda: record.update(ENDED),
        lambda: record.update(OTHER_STARTED, durable=False),
    )
    assert synced == [tmp_path / FLEET_FILE]
    assert [host.status for host in load_fleet(tmp_path).hosts] == ["succeeded", "running"]


def test_the_record_is_not_locked_while_fleet_json_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one host's change is being written, another thread can take the record's lock."""
    record = _record(tmp_path)
    replace = atomicwrite.replace_text
    writing, finish = threading.Event(), threading.Event()

    def slow_replace(path: Path, text: str, *, durable: bool) -> None:
        writing.set()
        assert finish.wait(WAIT)
        replace(path, text, durable=durable)

    monkeypatch.setattr(fleet_record, "replace_text", slow_replace)
    thread = threading.Thread(target=record.update, args=(ENDED,))
    thread.start()
    assert writing.wait(WAIT)
    free = record._lock.acquire(blocking=False)
    if free:
        record._lock.release()
    finish.set()
    thread.join(WAIT)
    assert free


def test_an_unwritable_fleet_folder_is_a_run_dir_error(tmp_path: Path) -> None:
    """A fleet folder that is gone makes the update fail with RunDirError naming fleet.json."""
    record = FleetRecord(tmp_path / "gone" / FLEET_FILE, "f1", "run", {}, {})
    with pytest.raises(RunDirError, match=r"gone: cannot write fleet\.json"):
        record.update(ENDED)
