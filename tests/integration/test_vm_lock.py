"""The lock on the VM itself, against a real target, from two "controllers".

Two controllers are two imageprep processes with their own state directories
(``XDG_STATE_HOME``), so the controller's lock (agent/lock.py) cannot see the other run:
only the lock the root shell holds on the target (/run/imageprep-vm.lock) can.

The probe step marks that it started and then waits for the test to let it go, so a
second run comes while the first one holds the target.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent.result_schema import ResultDocument
from tests.integration.cli_run import IMAGEPREP, imageprep, key_args, write_probe
from tests.integration.conftest import TargetFactory
from tests.targets.nspawn import NspawnTarget

pytestmark = pytest.mark.integration

TARGET_BUSY = 11
MARKS = "/var/lib/imageprep-lock-test"
WAITING_STEP = f"""\
- name: hold
  description: Mark that it runs, then wait until the test lets it go
  become: true
  timeout: 120
  run: |
    mkdir -p {MARKS} && touch {MARKS}/started
    while [ ! -e {MARKS}/go ]; do sleep 0.1; done
"""


def _controller(tmp_path: Path, name: str) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / f"state-{name}")}


def _start_holding_run(target: NspawnTarget, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Controller A's run, once its step runs on the target; returns it and its run id."""
    probe = write_probe(tmp_path / "probe", WAITING_STEP)
    run_dir = tmp_path / "first"
    first = subprocess.Popen(
        [IMAGEPREP, "run", *key_args(target), *probe, "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_controller(tmp_path, "a"),
    )
    deadline = time.monotonic() + 60
    while not target.guest_path(f"{MARKS}/started").exists():
        assert first.poll() is None, "the first run ended before its step ran"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run_id: str = json.loads((run_dir / "result.json").read_text())["run_id"]
    return first, run_id


def _let_go(target: NspawnTarget) -> None:
    target.guest_path(f"{MARKS}/go").touch()


def _second_run(target: NspawnTarget, tmp_path: Path, name: str) -> Any:
    probe = write_probe(tmp_path / "probe", WAITING_STEP)
    return imageprep(
        "run",
        *key_args(target),
        *probe,
        run_dir=tmp_path / name,
        env=_controller(tmp_path, "b"),
        timeout=120,
    )


def test_a_second_controller_is_refused_naming_the_holder(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """While controller A's run holds the VM, controller B's run exits 11 naming A's run."""
    target = target_factory()
    first, run_id = _start_holding_run(target, tmp_path)
    try:
        second = _second_run(target, tmp_path, "second")
    finally:
        _let_go(target)
    assert first.wait(60) == 0
    assert second.exit_code == TARGET_BUSY, second.stderr[-2000:]
    assert f"run {run_id} on controller {socket.gethostname()}" in second.stderr
    assert "holds the lock on the VM" in second.stderr
    assert second.report["exit_code"] == TARGET_BUSY
    assert second.report["steps"] == []  # refused before the facts and the plan


def test_the_lock_is_released_at_the_end_of_a_run(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """After A's run ends, B's run takes the lock and finds no record left behind."""
    target = target_factory()
    first, _ = _start_holding_run(target, tmp_path)
    _let_go(target)
    assert first.wait(60) == 0
    second = _second_run(target, tmp_path, "second")
    assert second.exit_code == 0, second.stderr[-2000:]
    lock = second.report["vm_lock"]
    assert lock["where"] == "/run/imageprep-vm.lock"
    assert lock["holder"]["run_id"] == second.report["run_id"]
    assert lock["stale_holder"] is None
    assert set(second.report) <= set(ResultDocument.model_fields)
    ResultDocument.model_validate(second.report)


def test_a_dead_controllers_lock_is_reported_not_silently_taken(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """A SIGKILLed controller's record: refused while its step runs, then taken with a warning."""
    target = target_factory()
    first, run_id = _start_holding_run(target, tmp_path)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # Its step still runs on the VM (the shell waits for it): the lock is still held.
    refused = _second_run(target, tmp_path, "refused")
    assert refused.exit_code == TARGET_BUSY, refused.stderr[-2000:]
    assert f"run {run_id} on controller" in refused.stderr
    _let_go(target)
    deadline = time.monotonic() + 60
    while True:
        second = _second_run(target, tmp_path, f"second-{int(time.monotonic() * 1000)}")
        if second.exit_code != TARGET_BUSY or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert second.exit_code == 0, second.stderr[-2000:]
    assert second.report["vm_lock"]["stale_holder"]["run_id"] == run_id
    assert f"the lock on the VM was left by run {run_id}" in second.stderr


def test_a_resumed_run_takes_the_lock_again(target_factory: TargetFactory, tmp_path: Path) -> None:
    """`run --resume` of a killed run retakes the VM's lock as its own: no stale warning."""
    target = target_factory()
    first, run_id = _start_holding_run(target, tmp_path)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    _let_go(target)
    deadline = time.monotonic() + 60
    while True:
        resumed = subprocess.run(
            [IMAGEPREP, "run", "--resume", str(tmp_path / "first"), *key_args(target)],
            capture_output=True,
            text=True,
            timeout=120,
            env=_controller(tmp_path, "a"),
            check=False,
        )
        if resumed.returncode != TARGET_BUSY or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads((tmp_path / "first" / "result.json").read_text())
    assert report["vm_lock"]["holder"]["run_id"] == run_id
    assert report["vm_lock"]["stale_holder"] is None
    assert "left by" not in resumed.stderr


def test_a_daemon_left_by_a_step_does_not_keep_the_lock(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """A background process a step starts does not inherit the lock: the next run gets it."""
    target = target_factory()
    probe = write_probe(
        tmp_path / "probe",
        """\
        - name: daemon
          description: Leave a process behind, as a service restart might
          become: true
          run: setsid sleep 4243 </dev/null >/dev/null 2>&1 &
        """,
    )
    # The sleep goes with the container at the end of the test.
    first = imageprep("run", *key_args(target), *probe, run_dir=tmp_path / "first")
    assert first.exit_code == 0, first.stderr[-2000:]
    second = imageprep(
        "run",
        *key_args(target),
        *probe,
        run_dir=tmp_path / "second",
        env=_controller(tmp_path, "b"),
    )
    assert second.exit_code == 0, second.stderr[-2000:]
