"""The lock on a Windows VM, through the real WinRmExecutor and pywinrm, on the test double.

The double models what the lock rests on (a test double for Windows, not for WinRM):
CreateFile's share modes, handles closed when their process ends (a Signal, the shell's
Delete, power-off), and delete-on-close. Two executors stand for two controllers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import TargetBusy
from agent.executors.winrm import WinRmExecutor, WinRmOptions
from agent.secrets import Secret
from agent.targets import Target
from agent.vmlock import LockHolder
from tests.winrm_server import WindowsMachine, WinRmTestServer, ntlm_user_file_line

USER = "Administrator"
PASSWORD = "Gold3n-Imag3!pw"  # noqa: S105  the test double's account
LOCK = r"C:\Windows\Temp\imageprep-vm.lock"


@pytest.fixture(autouse=True)
def ntlm_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspnego's NTLM acceptor reads its accounts from NTLM_USER_FILE."""
    users = tmp_path / "ntlm-users"
    users.write_text(ntlm_user_file_line(USER, PASSWORD))
    monkeypatch.setenv("NTLM_USER_FILE", str(users))


@pytest.fixture
def machine() -> WindowsMachine:
    return WindowsMachine(time_scale=0.01)


@pytest.fixture
def server(machine: WindowsMachine) -> Iterator[WinRmTestServer]:
    with WinRmTestServer(machine, username=USER, password=PASSWORD) as running:
        yield running


def _controller(server: WinRmTestServer) -> WinRmExecutor:
    target = Target("winrm", USER, "127.0.0.1", server.port)
    return WinRmExecutor(target, WinRmOptions(password=Secret(PASSWORD, "test")))


def _holder(controller: str, run_id: str) -> LockHolder:
    return LockHolder(controller, run_id, 4242, "2026-12-02T13:00:00Z")


def test_a_second_controller_is_refused_naming_the_holder(server: WinRmTestServer) -> None:
    """While A holds the lock, B's hold_vm_lock raises TargetBusy naming A's host and run."""
    with _controller(server) as first, _controller(server) as second:
        taken = first.hold_vm_lock(_holder("ci-a", "run-a"))
        assert taken.stale_holder is None
        with pytest.raises(TargetBusy, match=r"run run-a on controller ci-a .* holds the lock"):
            second.hold_vm_lock(_holder("ci-b", "run-b"))
        assert first.run("Write-Output 'still mine'").stdout.strip() == "still mine"


def test_the_lock_file_exists_only_while_held(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """The record is in the file while held; closing the executor deletes the file."""
    with _controller(server) as first:
        first.hold_vm_lock(_holder("ci-a", "run-a"))
        assert b'"run_id": "run-a"' in (machine.read_file(LOCK) or b"")
    assert not machine.file_exists(LOCK)
    with _controller(server) as second:
        assert second.hold_vm_lock(_holder("ci-b", "run-b")).stale_holder is None


def test_the_lock_goes_with_its_shell(server: WinRmTestServer, machine: WindowsMachine) -> None:
    """WinRM deleting the lock shell (idle timeout) ends the holder: B may take it."""
    with _controller(server) as first:
        first.hold_vm_lock(_holder("ci-a", "run-a"))
        lock_shell = first._lock_shell  # the test needs the lock shell itself
        assert lock_shell is not None
        server.service.delete_shell(lock_shell, "IdleTimeout")  # what WinRM does when idle
        with _controller(server) as second:
            assert second.hold_vm_lock(_holder("ci-b", "run-b")).stale_holder is None


def test_a_shutdown_leaves_no_lock_file_in_the_image(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """Power-off (Sysprep /shutdown) ends the holder; delete-on-close removes the file."""
    with _controller(server) as first:
        first.hold_vm_lock(_holder("ci-a", "run-a"))
        machine.power_off()
    assert not machine.file_exists(LOCK)


def test_a_record_nobody_holds_is_reported_as_stale(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """A lock file left by a power loss: taken, and its holder reported as stale."""
    machine.write_file(LOCK, _holder("ci-dead", "run-dead").to_line().encode())
    with _controller(server) as second:
        taken = second.hold_vm_lock(_holder("ci-b", "run-b"))
    assert taken.stale_holder is not None
    assert taken.stale_holder.run_id == "run-dead"
    assert taken.stale_holder.controller == "ci-dead"


def test_a_resume_takes_back_the_lock_its_interrupted_session_left(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """An interrupted session deletes nothing; the same run's next session takes its lock back."""
    first = _controller(server)
    first.connect()
    first.hold_vm_lock(_holder("ci-a", "run-a"))
    first._abandon("interrupted")  # what Ctrl-C/SIGTERM does: no Signal, no Delete
    with _controller(server) as other_run, pytest.raises(TargetBusy):
        other_run.hold_vm_lock(_holder("ci-b", "run-b"))
    with _controller(server) as resumed:
        taken = resumed.hold_vm_lock(_holder("ci-a", "run-a"))
        assert taken.stale_holder is None
        assert b'"run_id": "run-a"' in (machine.read_file(LOCK) or b"")


def test_the_held_lock_file_survives_the_temp_cleanup(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """Remove-Item of Temp\\* cannot delete the open lock file (in use), as on Windows."""
    with _controller(server) as first:
        first.hold_vm_lock(_holder("ci-a", "run-a"))
        cleaned = first.run(
            "Remove-Item -Path (Join-Path $env:SystemRoot 'Temp\\*') -Recurse -Force"
        )
        assert "being used by another process" in cleaned.stderr
        assert machine.file_exists(LOCK)


def _keeping(server: WinRmTestServer, keepalive: float) -> WinRmExecutor:
    target = Target("winrm", USER, "127.0.0.1", server.port)
    options = WinRmOptions(password=Secret(PASSWORD, "test"), lock_keepalive=keepalive)
    return WinRmExecutor(target, options)


def _busy_for_about(executor: WinRmExecutor, seconds: float) -> None:
    """Commands on the run's shell only, for ``seconds`` (the lock shell sees none)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert executor.run("Write-Output 'work'").exit_code == 0
        time.sleep(0.05)


# 300 virtual s of IdleTimeout: 3 s here. Not less: on a CI worker sharing two cores with
# booting targets and QEMU a thread can be starved for over a second, and at 1 s the run's
# own shell (busy every 50 ms) expired too. Busy for 7 s: more than twice the timeout.
IDLE_TIMEOUT_MS = 300_000
BUSY_SECONDS = 7.0


def test_the_lock_shell_outlives_the_idle_timeout_of_a_long_run(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """The keep-alive touches the lock shell: past IdleTimeout, the lock is still held."""
    machine.winrm_shell_config["IdleTimeout"] = IDLE_TIMEOUT_MS
    with _keeping(server, 0.2) as first:
        first.hold_vm_lock(_holder("ci-a", "run-a"))
        _busy_for_about(first, BUSY_SECONDS)
        assert server.stats.expired == []
        with _controller(server) as second, pytest.raises(TargetBusy):
            second.hold_vm_lock(_holder("ci-b", "run-b"))


def test_without_the_keep_alive_the_idle_lock_shell_would_go(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """The other side of the test above: a lock shell left alone is deleted by WinRM."""
    machine.winrm_shell_config["IdleTimeout"] = IDLE_TIMEOUT_MS
    with _keeping(server, 1e9) as first:
        first.hold_vm_lock(_holder("ci-a", "run-a"))
        _busy_for_about(first, BUSY_SECONDS)
        assert server.stats.expired == ["IdleTimeout"]
        assert not machine.file_exists(LOCK)


def test_a_lost_lock_shell_is_noticed_and_the_lock_taken_again(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """WinRM deletes the lock shell: the next keep-alive sees it and takes the lock again."""
    with _keeping(server, 0.0) as first:
        first.hold_vm_lock(_holder("ci-a", "run-a"))
        lock_shell = first._lock_shell  # the test needs the lock shell itself
        assert lock_shell is not None
        server.service.delete_shell(lock_shell, "MaxMemoryPerShellMB")
        assert not machine.file_exists(LOCK)
        first.run("Write-Output 'next step'")
        assert b'"run_id": "run-a"' in (machine.read_file(LOCK) or b"")
