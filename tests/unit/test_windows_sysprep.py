# ruff: noqa: F811  the fixtures imported from test_windows_run are parameters here
"""Sysprep over WinRM survives whatever happens to imageprep (issue 11 item 3).

The double kills a shell's processes when the shell is deleted or the command is
signalled (job-object semantics) and keeps a process started through
``Win32_Process.Create`` alive, as Windows does. Same set-up as test_windows_run.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.journal import JOURNAL_FILE
from agent.outcome import ExitCode
from tests.unit.test_windows_run import (  # noqa: F401  fixtures
    accounts,
    imageprep_run,
    machine,
    resume_run,
    server,
    tls,
)
from tests.winrm_server import TlsFiles, WindowsMachine, WinRmTestServer
from tests.winrm_server import machine as win

pytestmark = pytest.mark.usefixtures("accounts")


def _wait_for(condition: object, seconds: float = 20) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def _sigterm_when_sysprep_runs(machine: WindowsMachine, run_dir: Path) -> threading.Thread:
    """SIGTERM once Sysprep runs and its process id is in the journal (3 s of Sysprep)."""

    def journaled() -> bool:
        journal = run_dir / JOURNAL_FILE
        return journal.exists() and '"step_note"' in journal.read_text()

    def send() -> None:
        _wait_for(lambda: machine.sysprep_runs and journaled())
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def restore_sigterm() -> object:
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("restore_sigterm")
def test_sigterm_while_sysprep_runs_leaves_it_running_and_resume_settles_it(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """SIGTERM mid-generalize: no Signal/Delete, Sysprep finishes, --resume confirms it."""
    machine.sysprep_seconds = 300.0  # 3 s here
    _sigterm_when_sysprep_runs(machine, tmp_path / "run")
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.INTERRUPTED, run.result.output
    signals_before = len(server.stats.signals)
    deletes_before = server.stats.deletes
    _wait_for(lambda: machine.sysprep_runs[0].outcome != "running")
    assert machine.sysprep_runs[0].outcome == "succeeded"
    assert machine.image_state == win.IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE
    assert (server.stats.signals[signals_before:], server.stats.deletes) == ([], deletes_before)
    journal = (run.run_dir / JOURNAL_FILE).read_text()
    notes = [json.loads(line) for line in journal.splitlines() if '"step_note"' in line]
    assert [(n["key"], n["step"]) for n in notes] == [
        ("sysprep_pid", "deprovision/sysprep-generalize")
    ]
    resumed = resume_run(run.run_dir, tls)
    assert resumed.exit_code == ExitCode.OK, resumed.output
    assert len(machine.sysprep_runs) == 1


@pytest.mark.usefixtures("restore_sigterm")
def test_an_interrupted_run_sends_no_signal_and_no_delete(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """After the interrupt imageprep terminates nothing: the shell is left to expire."""
    machine.sysprep_seconds = 300.0
    _sigterm_when_sysprep_runs(machine, tmp_path / "run")
    deletes_before = server.stats.deletes
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.INTERRUPTED, run.result.output
    assert server.stats.deletes == deletes_before
    assert all(not s.was_running for s in server.stats.signals)


def test_the_deadline_ends_the_wait_but_not_sysprep(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """At sysprep_deadline_seconds: exit 6, logs fetched, Sysprep left running."""
    machine.sysprep_seconds = 1e6
    run = imageprep_run(server, tls, tmp_path, "--var", "sysprep_deadline_seconds=20")
    assert run.result.exit_code == ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN, run.result.output
    message = str(run.report["message"])
    assert "did not finish within 20 s" in message
    assert "left it running" in message
    assert machine.sysprep_runs[0].outcome == "running"
    assert (run.run_dir / "panther" / "setupact.log").is_file()


def test_sysprep_kill_on_deadline_stops_it(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """--var sysprep_kill_on_deadline=true: Sysprep is stopped at the deadline, said so."""
    machine.sysprep_seconds = 1e6
    run = imageprep_run(
        server,
        tls,
        tmp_path,
        "--var",
        "sysprep_deadline_seconds=20",
        "--var",
        "sysprep_kill_on_deadline=true",
    )
    assert run.result.exit_code == ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN, run.result.output
    assert "was stopped (sysprep_kill_on_deadline)" in str(run.report["message"])
    assert machine.sysprep_runs[0].outcome == "killed"


def test_the_step_timeout_kills_the_watcher_not_sysprep(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """Even the engine's step timeout (a Signal to the command) leaves Sysprep running."""
    machine.sysprep_seconds = 1e6
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "windows-server.yaml").write_text(
        "id: windows-server\ndescription: Short step timeout\nextends: windows-server\n"
        "match: {windows: {product_type: server}}\n"
        "phases:\n  deprovision:\n"
        "    - {name: sysprep-generalize, override: true, timeout: 2}\n"
    )
    run = imageprep_run(server, tls, tmp_path, "--profiles-dir", str(profiles))
    assert run.result.exit_code == ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN, run.result.output
    assert any(s.was_running for s in server.stats.signals)  # the watcher was terminated
    assert machine.sysprep_runs[0].outcome == "running"


@pytest.mark.usefixtures("restore_sigterm")
def test_resume_reports_sysprep_that_failed_after_the_interrupt(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """--resume of a run whose Sysprep later failed: exit 6 from the resume_check."""
    machine.sysprep_seconds = 300.0

    def encrypt_when_sysprep_starts() -> None:
        # BitLocker turned on under Sysprep: its validation, 1.5 s in, fails.
        _wait_for(lambda: machine.sysprep_runs)
        machine.bitlocker_status = "EncryptionInProgress"

    threading.Thread(target=encrypt_when_sysprep_starts, daemon=True).start()
    _sigterm_when_sysprep_runs(machine, tmp_path / "run")
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.INTERRUPTED, run.result.output
    _wait_for(lambda: machine.sysprep_runs[0].outcome != "running")
    resumed = CliRunner().invoke(
        main,
        [
            "run",
            "--resume",
            str(run.run_dir),
            "--password-env",
            "WINPASS",
            "--ca-cert",
            str(tls.ca_cert),
        ],
    )
    assert resumed.exit_code == ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN, resumed.output
    assert machine.sysprep_runs[0].outcome == "failed"


def test_mode_vm_is_opt_in(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """Sysprep runs without /mode:vm unless --var sysprep_mode_vm=true asks for it."""
    run = imageprep_run(server, tls, tmp_path / "default", "--skip", "power-off")
    assert run.result.exit_code == ExitCode.OK, run.result.output
    machine.image_state = win.IMAGE_STATE_COMPLETE
    again = imageprep_run(
        server, tls, tmp_path / "vm", "--skip", "power-off", "--var", "sysprep_mode_vm=true"
    )
    assert again.result.exit_code == ExitCode.OK, again.result.output
    assert [r.switches for r in machine.sysprep_runs] == [
        ("/generalize", "/oobe", "/quit", "/quiet"),
        ("/generalize", "/oobe", "/quit", "/quiet", "/mode:vm"),
    ]


# -- item 6: power-off that turns out to be a reboot --------------------------------------------


def test_a_vm_that_reboots_instead_of_powering_off_is_exit_6(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """The listener answers again after shutdown.exe /s: specialize ran, exit 6, said so."""
    machine.reboots_on_power_off = True
    machine.reboot_seconds = 50.0  # 0.5 s here
    run = imageprep_run(server, tls, tmp_path, "--var", "power_off_watch_seconds=10")
    assert run.result.exit_code == ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN, run.result.output
    message = str(run.report["message"])
    assert "the VM rebooted instead of powering off" in message
    assert "restore the VM from the backup" in message
    assert run.report["powered_off"] is False
    assert machine.boots == 1


def test_a_vm_that_stays_off_is_confirmed(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """A silent listener for power_off_watch_seconds: exit 0, powered off."""
    run = imageprep_run(server, tls, tmp_path, "--var", "power_off_watch_seconds=2")
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert run.report["powered_off"] is True
    assert machine.boots == 0


# -- item 12: the built-in OOBE answer file ------------------------------------------------------

ANSWER_FILE = r"C:\Windows\System32\Sysprep\imageprep-oobe.xml"
OOBE_PASSWORD = "Fr3sh-Admin!pw"  # noqa: S105  the test's OOBE password


def test_no_answer_file_unless_asked(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """By default imageprep writes no answer file and Sysprep gets no /unattend."""
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert run.step("cleanup/write-oobe-answer-file")["status"] == "skipped"
    assert not machine.file_exists(ANSWER_FILE)
    assert not any(s.startswith("/unattend") for s in machine.sysprep_runs[0].switches)


def test_the_builtin_answer_file_is_used_and_deleted_at_first_boot(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """oobe_answer_file=true off Azure: locale/time zone/PersistAllDeviceInstalls, no password."""
    machine.services.clear()  # not an Azure VM
    run = imageprep_run(
        server,
        tls,
        tmp_path,
        "--var",
        "oobe_answer_file=true",
        "--var",
        "oobe_locale=en-GB",
        "--var",
        "oobe_timezone=GMT Standard Time",
    )
    assert run.result.exit_code == ExitCode.OK, run.result.output
    xml = (machine.read_file(ANSWER_FILE) or b"").decode("utf-8-sig")
    assert "<PersistAllDeviceInstalls>true</PersistAllDeviceInstalls>" in xml
    assert "<UserLocale>en-GB</UserLocale>" in xml
    assert "<TimeZone>GMT Standard Time</TimeZone>" in xml
    assert "AdministratorPassword" not in xml
    assert machine.sysprep_runs[0].switches[-1] == f"/unattend:{ANSWER_FILE}".casefold()
    assert machine.file_exists(win.PANTHER_UNATTEND)
    machine._boot()  # the first boot of a VM deployed from the image
    assert not machine.file_exists(ANSWER_FILE)
    assert not machine.file_exists(win.PANTHER_UNATTEND)


def test_the_oobe_password_comes_from_the_environment_and_is_never_recorded(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The password reaches the answer file only: not argv, scripts, journal, report, log."""
    machine.services.clear()
    monkeypatch.setenv("OOBE_PW", OOBE_PASSWORD)
    run = imageprep_run(
        server,
        tls,
        tmp_path,
        "--var",
        "oobe_answer_file=true",
        "--var",
        "oobe_admin_password_env=OOBE_PW",
    )
    assert run.result.exit_code == ExitCode.OK, run.result.output
    encoded = base64.b64encode((OOBE_PASSWORD + "AdministratorPassword").encode("utf-16-le"))
    xml = (machine.read_file(ANSWER_FILE) or b"").decode("utf-8-sig")
    assert f"<Value>{encoded.decode()}</Value><PlainText>false</PlainText>" in xml
    forms = {
        OOBE_PASSWORD,
        base64.b64encode(OOBE_PASSWORD.encode()).decode(),
        base64.b64encode(OOBE_PASSWORD.encode("utf-16-le")).decode(),
    }
    records = [p.read_text(errors="replace") for p in run.run_dir.rglob("*") if p.is_file()]
    records += [run.result.output, *machine.scripts, *server.stats.command_lines]
    for text in records:
        for form in forms:
            assert form not in text


def test_the_builtin_answer_file_is_refused_on_azure(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """With the Azure guest agent installed the built-in answer file is refused (exit 3)."""
    run = imageprep_run(server, tls, tmp_path, "--var", "oobe_answer_file=true")
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert "preflight/no-custom-unattend-on-azure" in str(run.report["message"])
