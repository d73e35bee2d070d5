"""One run per target: the flock, who holds it, and the refusal a second run gets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.errors import TargetBusy
from agent.lock import TargetLock, lock_path
from agent.outcome import ExitCode
from agent.targets import Target

VM = Target(scheme="ssh", user="azureuser", host="192.0.2.10", port=22)


def test_second_lock_on_the_same_target_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """While one run holds the lock, another gets TargetBusy with run id, pid and folder."""
    with (
        TargetLock.acquire(VM, run_id="abcd1234", run_dir=tmp_path / "r1"),
        pytest.raises(TargetBusy) as caught,
    ):
        TargetLock.acquire(VM, run_id="ffff0000", run_dir=tmp_path / "r2")
    message = str(caught.value)
    assert "ssh://azureuser@192.0.2.10:22 is busy" in message
    assert f"run abcd1234 (pid {os.getpid()}, run folder {tmp_path / 'r1'})" in message


def test_lock_is_per_machine_not_per_login_user(tmp_path: Path) -> None:
    """Another login user on the same host:port is the same VM; another port is not."""
    other_user = Target(scheme="ssh", user="builder", host="192.0.2.10", port=22)
    other_port = Target(scheme="ssh", user="azureuser", host="192.0.2.10", port=2222)
    with TargetLock.acquire(VM, run_id="a", run_dir=tmp_path):
        with pytest.raises(TargetBusy):
            TargetLock.acquire(other_user, run_id="b", run_dir=tmp_path)
        TargetLock.acquire(other_port, run_id="c", run_dir=tmp_path).release()


def test_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    """After release the next run gets the lock."""
    TargetLock.acquire(VM, run_id="a", run_dir=tmp_path).release()
    TargetLock.acquire(VM, run_id="b", run_dir=tmp_path).release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    """SIGKILL of the holder drops its flock: the next run is not blocked."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from agent.lock import TargetLock;"
            "from agent.targets import Target;"
            "TargetLock.acquire(Target('ssh','u','192.0.2.10',22), run_id='x', run_dir=Path('.'));"
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(TargetBusy, match="run x"):
        TargetLock.acquire(VM, run_id="b", run_dir=tmp_path)
    holder.kill()
    holder.communicate()
    TargetLock.acquire(VM, run_id="b", run_dir=tmp_path).release()


def test_lock_file_lives_in_the_xdg_state_dir(private_state_dir: Path) -> None:
    """$XDG_STATE_HOME/imageprep/locks/<sha256 of host:port>.lock."""
    path = lock_path(VM)
    assert path.parent == private_state_dir / "imageprep" / "locks"
    assert len(path.stem) == 32


def test_cli_second_run_is_one_line_exit_11_and_leaves_no_folder(tmp_path: Path) -> None:
    """`imageprep run` against a busy target: one error line, exit 11, nothing contacted."""
    run_dir = tmp_path / "second"
    with TargetLock.acquire(VM, run_id="abcd1234", run_dir=tmp_path / "first"):
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--target",
                "ssh://builder@192.0.2.10:22",
                "--no-backup",
                "--reason",
                "test",
                "--run-dir",
                str(run_dir),
                "--log-format",
                "json",
            ],
        )
    assert result.exit_code == ExitCode.TARGET_BUSY
    assert int(ExitCode.TARGET_BUSY) == 11
    lines = [line for line in result.output.splitlines() if line.startswith("imageprep:")]
    assert len(lines) == 1
    assert "ssh://builder@192.0.2.10:22 is busy: run abcd1234 (pid" in lines[0]
    assert not run_dir.exists()
