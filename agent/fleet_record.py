"""A fleet's record: ``fleet.json`` in the fleet folder, and its table on the console.

fleet.json is rewritten (atomically, redacted, like result.json) whenever a host starts
or ends, so a fleet that is killed still says which hosts ran and where their run
folders are. Each host's own story is in its run folder's result.json; fleet.json says
only how each ended (exit code, status, message) and where to look. It also keeps what
the fleet was asked (inventory, limit, playbook, backup...) so that ``run --resume
FLEET_DIR`` can start the hosts that never started.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.atomicwrite import fsync_path, replace_text
from agent.errors import RunDirError
from agent.limits import MAX_JOURNAL_BYTES
from agent.outcome import FLEET_EXIT_ORDER, ExitCode, worst_exit_code
from agent.redaction import Redactor
from agent.report import utc_now
from agent.safefiles import read_regular

FLEET_FILE = "fleet.json"
FLEET_LOG_FILE = "fleet.log.jsonl"
SCHEMA_VERSION = 1

_REDACTOR = Redactor()


@dataclass(frozen=True)
class HostResult:
    """How one host of the fleet ended (or stands); its run folder has the rest."""

    name: str
    address: str
    target: str
    status: str  # pending, running, succeeded, failed, interrupted, refused
    exit_code: ExitCode | None = None
    message: str = ""
    run_dir: Path | None = None
    run_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    # Run folders of this host's earlier attempts that could not be continued.
    earlier_run_dirs: tuple[Path, ...] = ()

    @property
    def finished(self) -> bool:
        return self.exit_code is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "target": self.target,
            "status": self.status,
            "exit_code": None if self.exit_code is None else int(self.exit_code),
            "exit_reason": None if self.exit_code is None else self.exit_code.name.lower(),
            "message": self.message,
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "earlier_run_dirs": [str(p) for p in self.earlier_run_dirs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostResult:
        code = data.get("exit_code")
        run_dir = data.get("run_dir")
        return cls(
            name=str(data["name"]),
            address=str(data.get("address", "")),
            target=str(data.get("target", "")),
            status=str(data.get("status", "pending")),
            exit_code=None if code is None else ExitCode(int(code)),
            message=str(data.get("message", "")),
            run_dir=None if run_dir is None else Path(run_dir),
            run_id=data.get("run_id"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            earlier_run_dirs=tuple(Path(p) for p in data.get("earlier_run_dirs", ())),
        )


@dataclass(frozen=True)
class _Snapshot:
    """fleet.json's text at one moment, numbered in the order the moments happened."""

    seq: int
    text: str
    durable: bool


@dataclass
class FleetRecord:
    """fleet.json as it is being written: thread-safe updates, each one saved at once.

    Two locks, so that host threads do not queue behind each other's fsync: ``_lock``
    guards the hosts and is held only to take a snapshot (the redacted JSON text and its
    sequence number); ``_write_lock`` is held to write a snapshot to disk. Sequence
    numbers are handed out under ``_lock``, so a higher one holds every change of a lower
    one; the writer skips a snapshot older than the one on disk, so an older snapshot
    never replaces a newer one, however the threads are scheduled between the two locks.
    When ``update`` or ``save`` returns, fleet.json holds its change or a later state, and
    fsync'd if it asked for durability (see :meth:`_store`).
    """

    path: Path
    fleet_id: str
    command: str
    request: Mapping[str, Any]
    hosts: dict[str, HostResult]
    started_at: str = field(default_factory=utc_now)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _write_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _taken: int = field(default=0, init=False, repr=False)  # under _lock: last seq handed out
    _written: int = field(default=0, init=False, repr=False)  # under _write_lock: seq on disk
    _synced: int = field(default=0, init=False, repr=False)  # under _write_lock: last fsync'd

    def update(self, result: HostResult, *, durable: bool = True) -> None:
        """Record ``result``; ``durable=False`` skips the fsync (a host that only started)."""
        with self._lock:
            self.hosts[result.name] = result
            snapshot = self._snapshot(finished=False, durable=durable)
        self._store(snapshot)

    def save(self) -> None:
        with self._lock:
            snapshot = self._snapshot(finished=False, durable=True)
        self._store(snapshot)

    def finish(self) -> ExitCode:
        with self._lock:
            snapshot = self._snapshot(finished=True, durable=True)
            code = self.exit_code
        self._store(snapshot)
        return code

    @property
    def exit_code(self) -> ExitCode:
        codes = [h.exit_code for h in self.hosts.values()]
        if any(code is None for code in codes):
            return ExitCode.INTERRUPTED  # a host that never ended: the fleet did not finish
        return worst_exit_code(code for code in codes if code is not None)

    def to_dict(self, *, finished: bool) -> dict[str, Any]:
        code = self.exit_code if finished else None
        return {
            "schema_version": SCHEMA_VERSION,
            "fleet_id": self.fleet_id,
            "command": self.command,
            "started_at": self.started_at,
            "finished_at": utc_now() if finished else None,
            "status": fleet_status(code),
            "exit_code": None if code is None else int(code),
            "exit_reason": None if code is None else code.name.lower(),
            "exit_order": [int(c) for c in FLEET_EXIT_ORDER],
            "request": dict(self.request),
            "sessions": self.sessions,
            "hosts": [host.to_dict() for host in self.hosts.values()],
        }

    def _snapshot(self, *, finished: bool, durable: bool) -> _Snapshot:
        """The text to write now; the caller holds ``_lock``."""
        clean = _REDACTOR.redact(self.to_dict(finished=finished))
        # Made here, under the lock, so the text is this moment's. json.dumps, not
        # json.dump: dump to a file never uses json's C encoder, and dumps uses it only
        # without indent; so, as result.json's progress rewrites, the writes that are not
        # fsync'd (a host that only started) are compact, and the durable ones (a host
        # that ended, a session's start, the fleet's end), which people read, indented.
        text = json.dumps(clean, indent=2 if durable else None, default=str) + "\n"
        self._taken += 1
        return _Snapshot(self._taken, text, durable)

    def _store(self, snapshot: _Snapshot) -> None:
        """Write ``snapshot`` unless a newer one is on disk already (which holds its change).

        Compared with the last snapshot written, not the last one taken: a newer snapshot
        taken by another thread but not yet written (or whose write then fails) would let
        this call return before its change is on disk.

        A skipped snapshot that asked for durability still gets it: if the newer file on
        disk was written without fsync (a host that only started, taken after this one), it
        is fsync'd here, as this snapshot's own file would have been. A failed write leaves
        ``_written`` as it was, so the next snapshot is still written (and it holds the
        failed one's change too).
        """
        with self._write_lock:
            try:
                if snapshot.seq < self._written:
                    if snapshot.durable and self._synced < snapshot.seq:
                        fsync_path(self.path)
                        self._synced = self._written
                    return
                replace_text(self.path, snapshot.text, durable=snapshot.durable)
            except OSError as exc:
                raise RunDirError(
                    f"fleet folder {self.path.parent}: cannot write {FLEET_FILE}: {exc}"
                ) from exc
            self._written = snapshot.seq
            if snapshot.durable:
                self._synced = snapshot.seq


def fleet_status(code: ExitCode | None) -> str:
    if code is None:
        return "running"
    if code is ExitCode.OK:
        return "succeeded"
    return "interrupted" if code is ExitCode.INTERRUPTED else "failed"


@dataclass(frozen=True)
class LoadedFleet:
    """A fleet folder's fleet.json, read back for ``run --resume FLEET_DIR``."""

    path: Path
    fleet_id: str
    command: str
    request: Mapping[str, Any]
    hosts: tuple[HostResult, ...]
    sessions: tuple[Mapping[str, Any], ...]
    started_at: str | None


def is_fleet_dir(path: Path) -> bool:
    return (path / FLEET_FILE).is_file()


def load_fleet(fleet_dir: Path) -> LoadedFleet:
    """Read FLEET_DIR/fleet.json, or raise RunDirError naming what is wrong with it."""
    path = fleet_dir / FLEET_FILE
    try:
        data = json.loads(read_regular(path, MAX_JOURNAL_BYTES))
        hosts = tuple(HostResult.from_dict(h) for h in data["hosts"])
        return LoadedFleet(
            path=path,
            fleet_id=str(data["fleet_id"]),
            command=str(data["command"]),
            request=dict(data["request"]),
            hosts=hosts,
            sessions=tuple(data.get("sessions") or ()),
            started_at=data.get("started_at"),
        )
    except OSError as exc:
        raise RunDirError(f"--resume {fleet_dir}: cannot read {FLEET_FILE}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RunDirError(f"--resume {fleet_dir}: {path} is not a fleet record: {exc!r}") from None


# -- the console table -------------------------------------------------------------------


def render_table(hosts: Sequence[HostResult], *, fleet_dir: Path | None) -> str:
    """One line per host: name, address, exit code, status, and where to look."""
    rows = [("HOST", "ADDRESS", "EXIT", "STATUS", "RUN FOLDER / MESSAGE")]
    for host in hosts:
        where = _relative(host.run_dir, fleet_dir) if host.run_dir is not None else ""
        detail = where if host.exit_code is ExitCode.OK else f"{where}  {host.message}".strip()
        code = "-" if host.exit_code is None else str(int(host.exit_code))
        rows.append((host.name, host.address, code, host.status, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            (
                f"{r[0]:<{widths[0]}}",
                f"{r[1]:<{widths[1]}}",
                f"{r[2]:>{widths[2]}}",
                f"{r[3]:<{widths[3]}}",
                r[4],
            )
        ).rstrip()
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def _relative(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


def tally(hosts: Sequence[HostResult]) -> str:
    counts: dict[str, int] = {}
    for host in hosts:
        counts[host.status] = counts.get(host.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
