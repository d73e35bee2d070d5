"""`imageprep run` on a Windows target, end to end, through the CLI in process.

The real CLI, runner, engine, windows-server profile and WinRmExecutor (unchanged
pywinrm) talk WS-Management over HTTPS with NTLM and a CA file to ``tests.winrm_server``,
a test double for a Windows machine, on 127.0.0.1. The machine runs in virtual time
(``time_scale``), so Sysprep's minutes take milliseconds.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.cli import main
from agent.journal import JOURNAL_FILE
from agent.outcome import ExitCode
from tests.winrm_server import (
    TlsFiles,
    WindowsMachine,
    WinRmTestServer,
    make_tls_files,
    ntlm_user_file_line,
)
from tests.winrm_server import machine as win

USER = "Administrator"
PASSWORD = "Gold3n-Imag3!pw"  # noqa: S105  the test double's account
TIME_SCALE = 0.01  # one virtual second = 10 ms


@pytest.fixture(autouse=True)
def accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The double's NTLM account, and the password imageprep reads from WINPASS."""
    users = tmp_path / "ntlm-users"
    users.write_text(ntlm_user_file_line(USER, PASSWORD))
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    monkeypatch.setenv("WINPASS", PASSWORD)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def machine() -> WindowsMachine:
    return WindowsMachine(time_scale=TIME_SCALE, sysprep_seconds=6.0)


@pytest.fixture
def server(machine: WindowsMachine, tls: TlsFiles) -> Iterator[WinRmTestServer]:
    with WinRmTestServer(machine, username=USER, password=PASSWORD, tls=tls) as running:
        yield running


@dataclass
class Run:
    result: Result
    run_dir: Path
    seconds: float

    @property
    def report(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.run_dir / "result.json").read_text())
        return data

    def step(self, key: str) -> dict[str, object]:
        steps = self.report["steps"]
        assert isinstance(steps, list)
        return next(s for s in steps if f"{s['phase']}/{s['name']}" == key)


def imageprep_run(
    server: WinRmTestServer,
    tls: TlsFiles,
    tmp_path: Path,
    *extra: str,
    trust: tuple[str, ...] | None = None,
    backup: str | None = "command:echo snap-0001",
    playbook: str = "generalize",
    url: str | None = None,
) -> Run:
    tmp_path.mkdir(parents=True, exist_ok=True)
    run_dir = tmp_path / "run"
    args = [
        "run" if playbook == "generalize" else playbook,
        "--target",
        url or f"winrm+https://{USER}@127.0.0.1:{server.port}",
        "--password-env",
        "WINPASS",
        *(("--ca-cert", str(tls.ca_cert)) if trust is None else trust),
        *(("--backup", backup) if backup and playbook == "generalize" else ()),
        "--run-dir",
        str(run_dir),
        "--log-format",
        "json",
        "--var",
        "sysprep_poll_seconds=1",
        # The double's listener stays silent after power-off unless a test reboots it.
        "--var",
        "power_off_watch_seconds=1",
        *extra,
    ]
    started = time.monotonic()
    result = CliRunner().invoke(main, args)
    return Run(result, run_dir, time.monotonic() - started)


def test_success_generalizes_verifies_and_powers_off(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """A clean VM is generalized, verified and powered off; exit 0 and a full report."""
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert machine.image_state == win.IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE
    assert machine.file_exists(win.SUCCEEDED_TAG)
    assert [r.switches for r in machine.sysprep_runs] == [
        ("/generalize", "/oobe", "/quit", "/quiet")
    ]
    assert not machine.powered_on  # the double saw shutdown.exe /s
    report = run.report
    assert report["powered_off"] is True
    assert report["profile"] == "windows-server"
    assert report["backup"]["reference"] == "snap-0001"  # type: ignore[index]
    assert report["facts"]["windows"]["build"] == "20348"  # type: ignore[index]
    verification = report["verification"]
    assert isinstance(verification, list)
    assert {v["name"] for v in verification} == {
        "image-state-generalized",
        "sysprep-tag-present",
        "setup-type-generalized",
        "setuperr-clean",
    }
    assert all(v["status"] == "ok" for v in verification)
    assert run.step("cleanup/clear-event-logs")["status"] == "skipped"


def test_per_user_appx_package_fails_preflight_and_names_it(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """An AppX package installed for a user only: exit 3, offender named, no Sysprep."""
    package = "Microsoft.Copilot_1.0.3.0_x64__8wekyb3d8bbwe"
    machine.appx_installed["azureuser"] = {package}
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    message = str(run.report["message"])
    assert package in message
    assert "WIN-IMAGEPREP\\azureuser" in message
    assert "preflight/appx-provisioned-for-all-users" in message
    assert machine.sysprep_runs == []
    assert machine.image_state == win.IMAGE_STATE_COMPLETE


def test_pending_reboot_fails_preflight(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """A CBS RebootPending key: exit 3 with the key named; Sysprep never starts."""
    machine.create_key(win.PENDING_REBOOT_KEYS[0])
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert "RebootPending" in str(run.report["message"])
    assert run.step("preflight/no-pending-reboot")["status"] == "failed"
    assert machine.sysprep_runs == []


def test_missing_sysprep_fails_preflight(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """No sysprep.exe: exit 3 naming it, before any cleanup step ran."""
    del machine.files[win.file_key(win.SYSPREP_DIR + r"\sysprep.exe")]
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert r"System32\Sysprep\sysprep.exe is missing" in str(run.report["message"])
    assert run.step("preflight/sysprep-present")["status"] == "failed"
    steps = run.report["steps"]
    assert isinstance(steps, list)
    cleanup = {s["status"] for s in steps if s["phase"] == "cleanup"}
    assert cleanup == {"not_run"}


@pytest.mark.parametrize(
    ("tool", "named"),
    [
        (r"C:\Program Files\Amazon\EC2Launch\ec2launch.exe", '"ec2launch.exe sysprep"'),
        (
            r"C:\ProgramData\Amazon\EC2-Windows\Launch\Scripts\SysprepInstance.ps1",
            "SysprepInstance",
        ),
        (r"C:\Program Files\Amazon\Ec2ConfigService\ec2config.exe", '"ec2config.exe -sysprep"'),
        (r"C:\Program Files\Google\Compute Engine\sysprep\gcesysprep.bat", "GCESysprep"),
    ],
)
def test_an_aws_or_gce_vm_fails_preflight_naming_its_own_tool(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    tool: str,
    named: str,
) -> None:
    """EC2Launch, EC2Config or GCESysprep installed: exit 3 naming the cloud's tool."""
    machine.write_file(tool, b"MZ")
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    message = str(run.report["message"])
    assert named in message
    assert "--skip not-on-aws-or-gce" in message
    assert machine.sysprep_runs == []


@pytest.mark.parametrize(
    ("cmdlets", "status", "named"),
    [
        (True, "FullyEncrypted", "C: is FullyEncrypted (protection On)"),
        # The feature without its PowerShell module still encrypts: WMI's answer decides.
        (False, "EncryptionPaused", "C: is EncryptionPaused (protection Off)"),
    ],
    ids=["get-bitlockervolume", "wmi"],
)
def test_bitlocker_on_fails_preflight(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    cmdlets: bool,
    status: str,
    named: str,
) -> None:
    """An encrypted OS volume: exit 3 naming BitLocker's state; Sysprep never starts."""
    machine.bitlocker_cmdlets = cmdlets
    machine.bitlocker_status = status
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert named in str(run.report["message"])
    assert run.step("preflight/os-volume-decrypted")["status"] == "failed"
    assert machine.sysprep_runs == []


@pytest.mark.parametrize(
    ("feature", "shown"),
    [
        # GetConversionStatus says FullyDecrypted.
        (True, "the OS volume C: is FullyDecrypted"),
        # Neither the cmdlets nor the WMI provider: nothing can have been encrypted.
        (False, "BitLocker is not installed"),
    ],
    ids=["wmi-decrypted", "no-bitlocker"],
)
def test_the_volume_check_passes_without_bitlockers_cmdlets(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    feature: bool,
    shown: str,
) -> None:
    """No Get-BitLockerVolume: a decrypted volume, or no BitLocker at all, passes."""
    machine.bitlocker_installed, machine.bitlocker_cmdlets = feature, False
    run = imageprep_run(server, tls, tmp_path, "--var", "sysprep_deadline_seconds=3000")
    step = run.step("preflight/os-volume-decrypted")
    assert step["status"] == "ok", run.result.output
    assert shown in str(step["stdout_tail"])


def test_sysprep_going_undeployable_fails_fast_with_setuperr(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """Sysprep failing in validation: exit 6 long before the deadline, setuperr in the message."""
    # Installed for a user after preflight passed (a Store update mid-run): only Sysprep's
    # own validation can catch it.
    package = "Microsoft.WindowsStore_22403.1401.3.0_x64__8wekyb3d8bbwe"

    def update_store_app_when_sysprep_starts() -> None:
        while not machine.sysprep_runs:
            time.sleep(0.001)
        machine.appx_installed["Administrator"] = {package}

    machine.sysprep_seconds = 60.0  # validation fails half way: 30 virtual s
    threading.Thread(target=update_store_app_when_sysprep_starts, daemon=True).start()
    run = imageprep_run(server, tls, tmp_path, "--var", "sysprep_deadline_seconds=3000")
    assert run.result.exit_code == ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN, run.result.output
    assert machine.image_state == win.IMAGE_STATE_UNDEPLOYABLE
    message = str(run.report["message"])
    assert f"Package {package} was installed for a user" in message
    assert "cause: an AppX package is installed for a user" in message
    # 3000 virtual seconds are 30 s here; failing fast means well under that.
    assert run.seconds < 10
    setuperr = (run.run_dir / "panther" / "setuperr.log").read_text()
    assert "SysprepGeneralizeValidate" in setuperr
    assert (run.run_dir / "panther" / "setupact.log").is_file()
    assert run.report["powered_off"] is False
    assert run.step("verify/image-state-generalized")["status"] == "not_run"


def test_password_never_reaches_the_report_or_the_log(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """The password appears in no form (raw, base64, UTF-16LE base64) in the run folder."""
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    texts = [
        (run.run_dir / "result.json").read_text(),
        (run.run_dir / "run.log.jsonl").read_text(),
        run.result.output,
    ]
    forms = {
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(PASSWORD.encode("utf-16-le")).decode(),
    }
    for text in texts:
        for form in forms:
            assert form not in text


def test_wrong_password_is_a_connection_failure(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected password: exit 4, one line, the run folder written."""
    monkeypatch.setenv("WINPASS", "not-the-password")
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.CONNECTION_FAILED, run.result.output
    assert "rejected the credentials" in str(run.report["message"])


def test_untrusted_certificate_is_refused_with_a_hint(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path
) -> None:
    """Without --ca-cert the test CA is unknown: exit 4, pointing at --ca-cert."""
    run = imageprep_run(server, tls, tmp_path, trust=())
    assert run.result.exit_code == ExitCode.CONNECTION_FAILED, run.result.output
    assert "--ca-cert" in str(run.report["message"])
    assert server.service.stats.creates == 0


def test_skipping_verification_works_and_is_logged_loudly(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path
) -> None:
    """--insecure-skip-verify connects to an unknown certificate and logs a warning."""
    run = imageprep_run(server, tls, tmp_path, trust=("--insecure-skip-verify",))
    assert run.result.exit_code == ExitCode.OK, run.result.output
    log = (run.run_dir / "run.log.jsonl").read_text()
    assert "winrm.tls_verification_disabled" in log


def test_archive_backup_is_refused_for_windows(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path
) -> None:
    """archive: is Linux-only: exit 2 before anything is contacted."""
    run = imageprep_run(server, tls, tmp_path, backup=f"archive:{tmp_path}")
    assert run.result.exit_code == ExitCode.USAGE, run.result.output
    assert "Linux-only" in str(run.report["message"])
    assert server.connections == 0


def test_winrm_flags_are_refused_for_ssh_targets(tmp_path: Path) -> None:
    """--ca-cert with an ssh:// target is a usage error, not silently ignored."""
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--target",
            "ssh://u@127.0.0.1:1",
            "--ca-cert",
            str(tmp_path / "ca.pem"),
            "--no-backup",
            "--reason",
            "x",
            "--log-format",
            "json",
        ],
    )
    assert result.exit_code == ExitCode.USAGE
    assert "--ca-cert is for winrm://" in result.output


def test_check_runs_preflight_only_and_changes_nothing(
    server: WinRmTestServer, machine: WindowsMachine, tmp_path: Path, tls: TlsFiles
) -> None:
    """`imageprep check` on Windows runs the preflight and leaves the VM as it was."""
    files_before = dict(machine.files)
    result = CliRunner().invoke(
        main,
        [
            "check",
            "--target",
            f"winrm+https://{USER}@127.0.0.1:{server.port}",
            "--password-env",
            "WINPASS",
            "--ca-cert",
            str(tls.ca_cert),
            "--run-dir",
            str(tmp_path / "run"),
            "--log-format",
            "json",
        ],
    )
    assert result.exit_code == ExitCode.OK, result.output
    assert machine.files == files_before
    assert machine.sysprep_runs == []
    assert machine.powered_on


def _as_system(m: WindowsMachine) -> None:
    m.account_is_system = True


def _not_elevated(m: WindowsMachine) -> None:
    m.account_is_admin = False


def _first_boot_unfinished(m: WindowsMachine) -> None:
    m.image_state = "IMAGE_STATE_SPECIALIZE_RESEAL_TO_OOBE"


def _file_renames_pending(m: WindowsMachine) -> None:
    m.set_value(win.SESSION_MANAGER_KEY, "PendingFileRenameOperations", r"\??\C:\x")


def _domain_join_pending(m: WindowsMachine) -> None:
    m.create_key(win.NETLOGON_JOIN_DOMAIN_KEY)


def _tiworker_running(m: WindowsMachine) -> None:
    m.extra_processes.append("TiWorker")


def _being_renamed(m: WindowsMachine) -> None:
    m.set_value(win.COMPUTER_NAME_KEY, "ComputerName", "NEW-NAME")


def _configmgr_pending(m: WindowsMachine) -> None:
    m.configmgr_reboot_pending = True


def _domain_joined(m: WindowsMachine) -> None:
    m.part_of_domain, m.domain = True, "corp.example.com"


def _no_rearm(m: WindowsMachine) -> None:
    m.rearm_count = 0


def _sysprep_running(m: WindowsMachine) -> None:
    m.extra_processes.append("sysprep")


def _disk_full(m: WindowsMachine) -> None:
    m.free_bytes = 100 * 1024**2


@pytest.mark.parametrize(
    ("arrange", "step", "words"),
    [
        (_as_system, "elevated-admin", "not supported under SYSTEM"),
        (_not_elevated, "elevated-admin", "no elevated administrator token"),
        (_first_boot_unfinished, "image-state-complete", "not finished its own first boot"),
        (_domain_join_pending, "no-pending-reboot", "a domain join is pending"),
        (_tiworker_running, "no-pending-reboot", "TiWorker.exe"),
        (_being_renamed, "no-pending-reboot", "renamed from WIN-IMAGEPREP to NEW-NAME"),
        (_configmgr_pending, "no-pending-reboot", "Configuration Manager"),
        (_domain_joined, "not-domain-joined", "corp.example.com"),
        (_no_rearm, "rearm-available", "SLReArmWindows"),
        (_sysprep_running, "sysprep-not-running", "already running"),
        (_disk_full, "free-space", "only 100 MiB free"),
    ],
)
def test_each_preflight_blocker_stops_the_run_untouched(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    arrange: object,
    step: str,
    words: str,
) -> None:
    """Every Sysprep blocker is diagnosed in preflight: exit 3, said why, nothing changed."""
    assert callable(arrange)
    arrange(machine)
    files_before = dict(machine.files)
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert f"preflight/{step}" in str(run.report["message"])
    assert words in str(run.report["message"])
    assert machine.sysprep_runs == []
    assert machine.files == files_before


def test_a_stopped_azure_agent_fails_after_its_retries(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """The agent check is retried (a user profile shortens the delay); then exit 3."""
    machine.services["WindowsAzureGuestAgent"] = "Stopped"
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "windows-server.yaml").write_text(
        "id: windows-server\ndescription: No waiting in tests\nextends: windows-server\n"
        "match: {windows: {product_type: server}}\n"
        "phases:\n  preflight:\n"
        "    - {name: azure-agent-running, override: true, retry_delay: 0}\n"
    )
    run = imageprep_run(server, tls, tmp_path, "--profiles-dir", str(profiles), playbook="check")
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert "WindowsAzureGuestAgent (Stopped)" in str(run.report["message"])
    assert run.step("preflight/azure-agent-running")["attempts"] == 7


def test_domain_join_can_be_allowed(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """allow_domain_joined=true skips the domain check; the run generalizes."""
    _domain_joined(machine)
    run = imageprep_run(server, tls, tmp_path, "--var", "allow_domain_joined=true")
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert run.step("preflight/not-domain-joined")["status"] == "skipped"


def test_domain_join_false_as_text_keeps_the_check(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """--var allow_domain_joined=false is the boolean false: the domain check runs, exit 3."""
    _domain_joined(machine)
    run = imageprep_run(server, tls, tmp_path, "--var", "allow_domain_joined=false")
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert run.step("preflight/not-domain-joined")["status"] == "failed"
    assert machine.image_state == win.IMAGE_STATE_COMPLETE


# -- run --resume: Sysprep in doubt is settled by its resume_check, never rerun -----------

SYSPREP = "deprovision/sysprep-generalize"


def killed_while_sysprep_ran(server: WinRmTestServer, tls: TlsFiles, tmp_path: Path) -> Path:
    run = imageprep_run(server, tls, tmp_path, "--skip", "power-off")
    assert run.result.exit_code == ExitCode.OK, run.result.output
    journal = run.run_dir / JOURNAL_FILE
    lines = journal.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"step_started"' in line and SYSPREP in line)
    journal.write_text("".join(lines[: cut + 1]))
    return run.run_dir


def resume_run(run_dir: Path, tls: TlsFiles) -> Result:
    return CliRunner().invoke(
        main,
        [
            "run",
            "--resume",
            str(run_dir),
            "--password-env",
            "WINPASS",
            "--ca-cert",
            str(tls.ca_cert),
            "--log-format",
            "json",
        ],
    )


def test_sysprep_that_finished_is_confirmed_and_not_rerun(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """ImageState generalized and the tag present: the resume goes on to verification."""
    run_dir = killed_while_sysprep_ran(server, tls, tmp_path)
    result = resume_run(run_dir, tls)
    assert result.exit_code == ExitCode.OK, result.output
    assert len(machine.sysprep_runs) == 1
    log = (run_dir / "run.log.jsonl").read_text()
    assert '"resume_check": "in place"' in log


def test_sysprep_that_did_not_finish_is_exit_6_and_not_rerun(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """ImageState not generalized: the check says so, exit 6, Sysprep is not run again."""
    run_dir = killed_while_sysprep_ran(server, tls, tmp_path)
    machine.image_state = win.IMAGE_STATE_COMPLETE
    machine.files.pop(win.file_key(win.SUCCEEDED_TAG))
    result = resume_run(run_dir, tls)
    assert result.exit_code == ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN
    assert len(machine.sysprep_runs) == 1
    report = json.loads((run_dir / "result.json").read_text())
    sysprep = next(s for s in report["steps"] if s["name"] == "sysprep-generalize")
    assert "Sysprep did not finish: ImageState IMAGE_STATE_COMPLETE" in sysprep["stderr_tail"]
    assert "restore the VM from the backup" in report["message"]


# -- plan, transports, output and lost connections -----------------------------------------


def test_plan_reads_windows_facts_over_winrm_and_changes_nothing(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles
) -> None:
    """`plan --target winrm+https://` picks windows-server from live facts; no step runs."""
    files_before = dict(machine.files)
    result = CliRunner().invoke(
        main,
        [
            "plan",
            "--target",
            f"winrm+https://{USER}@127.0.0.1:{server.port}",
            "--password-env",
            "WINPASS",
            "--ca-cert",
            str(tls.ca_cert),
            "--log-format",
            "json",
        ],
    )
    assert result.exit_code == ExitCode.OK, result.output
    assert "profile  windows-server" in result.output
    assert "facts    windows 10.0.20348" in result.output
    assert "$ shutdown.exe /s /t 0 /f" in result.output
    assert len(machine.scripts) == 1  # the facts script, nothing else
    assert machine.files == files_before
    assert machine.sysprep_runs == []
    assert server.stats.creates == server.stats.deletes == 1


def test_plan_over_winrm_refuses_an_untrusted_certificate(
    server: WinRmTestServer, tls: TlsFiles
) -> None:
    """`plan` without --ca-cert: exit 4 pointing at --ca-cert, no shell opened."""
    result = CliRunner().invoke(
        main,
        [
            "plan",
            "--target",
            f"winrm+https://{USER}@127.0.0.1:{server.port}",
            "--password-env",
            "WINPASS",
            "--log-format",
            "json",
        ],
    )
    assert result.exit_code == ExitCode.CONNECTION_FAILED, result.output
    assert "--ca-cert" in result.output
    assert server.stats.creates == 0


@pytest.fixture
def http_server(machine: WindowsMachine) -> Iterator[WinRmTestServer]:
    with WinRmTestServer(machine, username=USER, password=PASSWORD) as running:
        yield running


def test_plain_http_basic_is_refused_without_allow_unencrypted(
    http_server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """winrm:// with Basic: exit 2 naming --allow-unencrypted; nothing is sent."""
    url = f"winrm://{USER}@127.0.0.1:{http_server.port}"
    run = imageprep_run(http_server, tls, tmp_path, "--winrm-transport", "basic", trust=(), url=url)
    assert run.result.exit_code == ExitCode.USAGE, run.result.output
    assert "--allow-unencrypted" in str(run.report["message"])
    assert http_server.requests == 0
    assert machine.scripts == []


def test_plain_http_basic_runs_with_allow_unencrypted(
    http_server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """winrm:// with Basic and --allow-unencrypted generalizes; nothing was sealed."""
    url = f"winrm://{USER}@127.0.0.1:{http_server.port}"
    extra = ("--winrm-transport", "basic", "--allow-unencrypted")
    run = imageprep_run(http_server, tls, tmp_path, *extra, trust=(), url=url)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert machine.image_state == win.IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE
    assert http_server.encrypted_requests == 0
    assert run.report["powered_off"] is True


NON_ASCII = "Grüße 日本"


def test_non_ascii_output_round_trips_through_run(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path
) -> None:
    """A step printing "Grüße 日本" reaches the report and the log exactly (code page 65001)."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "windows-server.yaml").write_text(
        "id: windows-server\ndescription: A greeting step\nextends: windows-server\n"
        "match: {windows: {product_type: server}}\n"
        "phases:\n  preflight:\n"
        "    - name: greet\n"
        "      description: Print non-ASCII text\n"
        f"      run: Write-Output '{NON_ASCII}'\n",
        encoding="utf-8",
    )
    run = imageprep_run(server, tls, tmp_path, "--profiles-dir", str(profiles), playbook="check")
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert run.step("preflight/greet")["stdout_tail"] == NON_ASCII
    log_lines = (run.run_dir / "run.log.jsonl").read_text(encoding="utf-8").splitlines()
    assert any(json.loads(line).get("line") == NON_ASCII for line in log_lines)


def _reset_once_when(
    server: WinRmTestServer, machine: WindowsMachine, marker: str
) -> threading.Event:
    """Reset the first Receive answered while ``marker`` runs; the event says it happened."""
    fired = threading.Event()

    def reset() -> bool:
        if fired.is_set() or not machine.scripts or marker not in machine.scripts[-1]:
            return False
        fired.set()
        return True

    server.reset_receive = reset
    return fired


def test_a_restart_scheduled_before_the_run_is_cancelled_and_the_vm_powers_off(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """shutdown.exe says 1190: the pending restart is cancelled and the VM powers off."""
    machine.schedule_power_off(3600, restart=True)  # as `shutdown /r /t 3600` would
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    step = run.step("shutdown/power-off")
    assert "already scheduled (1190): cancelling it" in str(step["stdout_tail"])
    assert not machine.powered_on
    assert not machine.shutdown_scheduled()
    assert machine.boots == 0


def test_reset_during_the_shutdown_step_is_the_expected_disconnect(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """The connection reset in power-off's Receive: step ok, disconnected, powered_off true."""
    fired = _reset_once_when(server, machine, "shutdown.exe /s")
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert fired.is_set()
    step = run.step("shutdown/power-off")
    assert step["status"] == "ok"
    assert step["disconnected"] is True
    assert step["exit_code"] is None  # lost mid-command (the success path sees exit 0 first)
    assert step["message"] == "connection closed as expected"
    assert run.report["powered_off"] is True


def test_reset_in_the_middle_of_a_cleanup_step_is_exit_5_naming_it(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """A reset mid cleanup/clean-temp: exit 5 naming the step; no Sysprep; VM still on."""
    fired = _reset_once_when(server, machine, "emptied the Windows and user temp")
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.FAILED_BEFORE_POINT_OF_NO_RETURN, run.result.output
    assert fired.is_set()
    message = str(run.report["message"])
    assert "cleanup/clean-temp" in message
    assert "lost the connection" in message
    assert "the VM is still usable" in message
    assert run.step("cleanup/clean-temp")["status"] == "disconnected"
    assert run.report["powered_off"] is False
    assert machine.sysprep_runs == []
    assert machine.powered_on


def test_several_mib_of_output_through_run(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path
) -> None:
    """A step printing 4 MiB completes through `imageprep run`; the report keeps a short tail."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "windows-server.yaml").write_text(
        "id: windows-server\ndescription: A chatty step\nextends: windows-server\n"
        "match: {windows: {product_type: server}}\n"
        "phases:\n  preflight:\n"
        "    - name: chatty\n"
        "      description: Print 4 MiB\n"
        "      run: Write-Output ('x' * 4194304)\n",
        encoding="utf-8",
    )
    run = imageprep_run(server, tls, tmp_path, "--profiles-dir", str(profiles), playbook="check")
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert run.step("preflight/chatty")["stdout_tail"] == "x" * 8192


class _NotWinRm(http.server.BaseHTTPRequestHandler):
    """A web server that is not WinRM: every request gets a plain 404 page."""

    def do_POST(self) -> None:
        body = b"<html><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def test_a_web_server_that_is_not_winrm_is_a_connection_failure(tmp_path: Path) -> None:
    """A winrm:// URL that reaches some other HTTP server: one line, exit 4, a report."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotWinRm) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            result = CliRunner().invoke(
                main,
                [
                    "check",
                    "--target",
                    f"winrm://{USER}@127.0.0.1:{httpd.server_address[1]}",
                    "--password-env",
                    "WINPASS",
                    "--winrm-transport",
                    "basic",
                    "--allow-unencrypted",
                    "--run-dir",
                    str(tmp_path / "run"),
                    "--log-format",
                    "json",
                ],
            )
        finally:
            httpd.shutdown()
    assert result.exit_code == ExitCode.CONNECTION_FAILED, result.output
    report = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "127.0.0.1" in report["message"]
    assert "Traceback" not in result.output


def test_a_run_holds_the_vm_lock_and_leaves_no_lock_file(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """result.json's vm_lock names the lock file and this run; the file is gone afterwards."""
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    lock = run.report["vm_lock"]
    assert isinstance(lock, dict)
    assert lock["where"] == r"%SystemRoot%\Temp\imageprep-vm.lock"
    assert lock["holder"]["run_id"] == run.report["run_id"]
    assert lock["stale_holder"] is None
    assert not machine.file_exists(r"C:\Windows\Temp\imageprep-vm.lock")


def test_a_run_is_refused_while_another_controller_holds_the_vm(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """Another controller's lock on the VM: exit 11 naming its host and run; nothing ran."""
    from agent.executors.winrm import WinRmExecutor, WinRmOptions
    from agent.secrets import Secret
    from agent.targets import Target
    from agent.vmlock import LockHolder

    other = WinRmExecutor(
        Target("winrm+https", USER, "127.0.0.1", server.port),
        WinRmOptions(password=Secret(PASSWORD, "test"), ca_cert=tls.ca_cert),
    )
    with other:
        other.hold_vm_lock(LockHolder("ci-7", "feedbeef", 4242, "2026-12-02T12:00:00Z"))
        run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.TARGET_BUSY, run.result.output
    assert "run feedbeef on controller ci-7" in str(run.report["message"])
    assert run.report["steps"] == []
    assert run.report.get("backup") is None  # refused before the backup
    assert machine.sysprep_runs == []
