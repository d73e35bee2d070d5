# ruff: noqa: F811  the fixtures imported from test_windows_run are parameters here
"""Windows preflight checks against a double as strict as PowerShell 5.1 (issue 11).

Same set-up as test_windows_run: the real CLI and WinRmExecutor talk to
``tests.winrm_server`` (a test double for a Windows machine) over HTTPS with NTLM. Here
the double's cmdlets fail the ways real ones do: a non-terminating error lets a script
go on unless ``$ErrorActionPreference`` is Stop, a thrown exception ends only its
statement, so a check that does not stop on errors reports ok on a machine it never read.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent.outcome import ExitCode
from tests.unit.test_windows_run import (  # noqa: F401  fixtures
    Run,
    accounts,
    imageprep_run,
    machine,
    server,
    tls,
)
from tests.winrm_server import TlsFiles, WindowsMachine, WinRmTestServer
from tests.winrm_server import machine as win

pytestmark = pytest.mark.usefixtures("accounts")


def check(server: WinRmTestServer, tls: TlsFiles, tmp_path: Path, *extra: str) -> Run:
    tmp_path.mkdir(exist_ok=True)
    return imageprep_run(server, tls, tmp_path, *extra, playbook="check")


# -- item 4: a cmdlet that fails makes its check fail, naming the cmdlet -------------------


@pytest.mark.parametrize(
    ("cmdlet", "failure"),
    [
        (
            "Get-AppxPackage",
            (
                "The type initializer for 'Microsoft.Windows.Appx.PackageManager.Commands."
                "AppxPackageHelper' threw an exception.",
                "TypeInitializationException",
            ),
        ),
        ("Get-BitLockerVolume", ("The device is not ready.", "")),
        ("Get-CimInstance", ("Access denied ", "")),
    ],
)
def test_a_failing_cmdlet_fails_its_check_naming_it(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    cmdlet: str,
    failure: tuple[str, str],
) -> None:
    """A cmdlet error (thrown or not) stops the check: exit 3, the cmdlet named."""
    machine.failing_cmdlets[cmdlet.casefold()] = failure
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    message = str(run.report["message"])
    assert f"{cmdlet} failed: {failure[0]}" in message


@pytest.mark.parametrize(
    ("cmdlet", "step"),
    [
        ("Get-AppxPackage", "appx-provisioned-for-all-users"),
        ("Get-BitLockerVolume", "os-volume-decrypted"),
        ("Get-AppxProvisionedPackage", "appx-provisioned-for-all-users"),
    ],
)
def test_each_check_fails_closed_on_its_own_cmdlet(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    cmdlet: str,
    step: str,
) -> None:
    """The check that uses the cmdlet is the one that fails (not some later one)."""
    machine.failing_cmdlets[cmdlet.casefold()] = ("it broke", "InvalidOperationException")
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert f"preflight/{step}" in str(run.report["message"])


def test_the_volume_check_fails_closed_when_wmi_cannot_say(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """Without Get-BitLockerVolume, a WMI error is a failed check, not "not encrypted"."""
    machine.bitlocker_cmdlets = False
    machine.failing_cmdlets["get-ciminstance"] = ("Access denied ", "")
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert run.step("preflight/os-volume-decrypted")["status"] == "failed"
    assert "Get-CimInstance failed: Access denied" in str(run.report["message"])


def test_domain_and_rearm_checks_fail_closed_on_wmi_errors(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """A WMI error in the domain or rearm check is a failure, not 'not joined'/'rearms left'."""
    machine.failing_cmdlets["get-ciminstance"] = ("Invalid class ", "")
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert "preflight/not-domain-joined" in str(run.report["message"])
    run = check(server, tls, tmp_path / "again", "--var", "allow_domain_joined=true")
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert "preflight/rearm-available" in str(run.report["message"])


# -- item 2: setuperr.log lines that a successful Sysprep writes are not failures ----------


def test_harmless_setuperr_lines_pass_and_are_reported(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """BCD c000000d, SPPNP 0x57, 0xE0000231 after a good Sysprep: exit 0, lines in the report."""
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    shown = str(run.step("verify/setuperr-clean")["stdout_tail"])
    for line in machine.harmless_setuperr:
        assert f"setuperr.log, not a failure: 2026-01-01 12:00:00, {line}" in shown


def test_a_failure_line_in_setuperr_fails_verification(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """A provider's failed action in setuperr.log fails verify/setuperr-clean (exit 7)."""
    machine.harmless_setuperr = (
        *machine.harmless_setuperr,
        "Error      [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while "
        "executing 'SysprepGeneralize' from C:\\Windows\\System32\\spbcd.dll",
    )
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.VERIFICATION_FAILED, run.result.output
    assert "setuperr.log says Sysprep failed (1 line(s))" in str(run.report["message"])
    assert "spbcd.dll" in str(run.report["message"])


# -- item 1: a localized Windows matches the profile -----------------------------------------


def test_a_russian_windows_server_is_matched_and_checked(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """A Russian caption: windows-server is chosen by build and ProductType; check passes."""
    machine.caption = "Майкрософт Windows Server 2022 Standard"
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert run.report["profile"] == "windows-server"
    assert run.report["facts"]["windows"]["product_type"] == "server"  # type: ignore[index]
    assert run.report["facts"]["windows"]["product_name"] == (  # type: ignore[index]
        "Майкрософт Windows Server 2022 Standard"
    )


# -- item 8: pending reboot --------------------------------------------------------------------


def _file_renames_pending(machine: WindowsMachine) -> None:
    machine.set_value(win.SESSION_MANAGER_KEY, "PendingFileRenameOperations", r"\??\C:\x")


def test_pending_file_renames_are_a_warning_by_default(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """PendingFileRenameOperations (often permanent) passes the check with a warning."""
    _file_renames_pending(machine)
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    shown = str(run.step("preflight/no-pending-reboot")["stdout_tail"])
    assert "warning: Session Manager has PendingFileRenameOperations" in shown


def test_strict_pending_reboot_refuses_pending_file_renames(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """--var strict_pending_reboot=true makes pending file renames a blocker again."""
    _file_renames_pending(machine)
    run = check(server, tls, tmp_path, "--var", "strict_pending_reboot=true")
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert "PendingFileRenameOperations" in str(run.report["message"])


# -- item 9: WinRM shell quotas and the idle timeout -------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("MaxMemoryPerShellMB", 512, "MaxMemoryPerShellMB is 512, below 1024"),
        ("MaxProcessesPerShell", 5, "MaxProcessesPerShell is 5, below 10"),
        ("IdleTimeout", 60000, "IdleTimeout is 60000 ms, below 300 s"),
    ],
)
def test_winrm_shell_quotas_that_would_break_the_run_are_refused(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    name: str,
    value: int,
    words: str,
) -> None:
    """Preflight reads WSMan:\\localhost\\Shell and names the value and the fix."""
    machine.winrm_shell_config[name] = value
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    message = str(run.report["message"])
    assert "preflight/winrm-shell-quotas" in message
    assert words in message
    assert f"Set-Item -Path WSMan:\\localhost\\Shell\\{name}" in message


def test_the_shell_is_opened_with_an_explicit_idle_timeout(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """The run's shell asks for a 2-hour IdleTimeOut rather than the listener's default."""
    seen: list[float | None] = []

    def watch() -> None:
        while not seen:
            seen.extend(s.idle_timeout for s in list(server.service.shells.values())[:1])
            time.sleep(0.001)

    threading.Thread(target=watch, daemon=True).start()
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert seen == [7200.0]


def test_a_deleted_watcher_shell_reconnects_and_settles_sysprep(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """WinRM deletes the shell waiting for Sysprep: imageprep reconnects and checks; exit 0."""
    machine.sysprep_seconds = 300.0  # 3 s here

    def quota_hits_while_sysprep_runs() -> None:
        while not machine.sysprep_runs:
            time.sleep(0.001)
        time.sleep(0.3)
        machine.winrm_shell_config["MaxMemoryPerShellMB"] = 50
        while not server.stats.expired:
            time.sleep(0.001)
        machine.winrm_shell_config["MaxMemoryPerShellMB"] = 2048

    threading.Thread(target=quota_hits_while_sysprep_runs, daemon=True).start()
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    # Every shell running a powershell.exe goes over the quota: the run's, and the shell
    # holding the lock on the VM (retaken with the new shell).
    assert set(server.stats.expired) == {"MaxMemoryPerShellMB"}
    assert [r.outcome for r in machine.sysprep_runs] == ["succeeded"]
    step = run.step("deprovision/sysprep-generalize")
    assert "its command was lost while it ran; resume_check found its effect" in str(
        step["message"]
    )


# -- item 11: Azure's "Generalize a VM" document -------------------------------------------------


def test_old_panther_logs_are_saved_to_the_run_folder_then_deleted(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """$env:SystemRoot\\Panther is copied to <run>/panther-before-sysprep, then removed."""
    run = imageprep_run(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.OK, run.result.output
    saved = run.run_dir / "panther-before-sysprep"
    assert (saved / "setupact.log").read_bytes() == b"setup log\r\n"
    assert (saved / "unattendgc" / "setupact.log").read_bytes() == b"oobe log\r\n"
    assert machine.files_below(win.SETUP_PANTHER_DIR) == []
    assert run.step("cleanup/remove-old-panther")["status"] == "ok"


def test_a_disabled_cdrom_driver_fails_preflight_with_the_fix(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """cdrom Start = 4: Azure could not read its provisioning ISO; exit 3 with the fix."""
    machine.set_value(win.CDROM_SERVICE_KEY, "Start", 4)
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    message = str(run.report["message"])
    assert "preflight/cdrom-driver-enabled" in message
    assert "Set-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Services\\cdrom" in message


def test_a_custom_unattend_is_refused_when_the_azure_agent_is_installed(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """sysprep_unattend on an Azure VM (guest agent installed): exit 3, Azure brings its own."""
    machine.write_file(r"C:\unattend\image.xml", b"<unattend/>")
    run = check(server, tls, tmp_path, "--var", "sysprep_unattend=C:\\unattend\\image.xml")
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    message = str(run.report["message"])
    assert "preflight/no-custom-unattend-on-azure" in message
    assert "Azure supplies its own answer file" in message


def test_a_custom_unattend_is_used_off_azure(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """Without the Azure guest agent the custom answer file passes preflight."""
    machine.services.clear()
    machine.write_file(r"C:\unattend\image.xml", b"<unattend/>")
    run = check(server, tls, tmp_path, "--var", "sysprep_unattend=C:\\unattend\\image.xml")
    assert run.result.exit_code == ExitCode.OK, run.result.output
    assert run.step("preflight/no-custom-unattend-on-azure")["status"] == "ok"


def test_the_appx_fix_works_on_server_2016(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """The AppX hint removes per user by SID (-User), which Server 2016 has; no -AllUsers."""
    package = "Microsoft.WindowsStore_22403.1401.3.0_x64__8wekyb3d8bbwe"
    machine.appx_installed["Administrator"] = {package}
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    message = str(run.report["message"])
    sid = machine.sid_of("Administrator")
    assert f"Remove-AppxPackage -Package {package} -User {sid}" in message
    assert "-AllUsers" not in message


# -- item 10: server roles Sysprep does not support -----------------------------------------


def test_an_unsupported_server_role_is_refused_by_name(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """AD DS and DHCP installed: preflight names both and the var that would allow them."""
    machine.installed_features += ["AD-Domain-Services", "DHCP", "DNS"]
    run = check(server, tls, tmp_path)
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    message = str(run.report["message"])
    assert "preflight/server-roles-supported" in message
    assert "AD-Domain-Services, DHCP;" in message
    assert "--var allow_unsupported_roles=AD-Domain-Services,DHCP" in message


def test_allowed_unsupported_roles_only_warn(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """--var allow_unsupported_roles=NAME,... turns each named refusal into a warning."""
    machine.installed_features += ["AD-Domain-Services", "DHCP"]
    run = check(server, tls, tmp_path, "--var", "allow_unsupported_roles=AD-Domain-Services,DHCP")
    assert run.result.exit_code == ExitCode.OK, run.result.output
    shown = str(run.step("preflight/server-roles-supported")["stdout_tail"])
    assert "warning: DHCP is not supported by Sysprep" in shown


def test_allowing_one_role_still_refuses_another(
    server: WinRmTestServer, machine: WindowsMachine, tls: TlsFiles, tmp_path: Path
) -> None:
    """Only the roles named in allow_unsupported_roles are let through."""
    machine.installed_features += ["AD-Certificate", "Fax"]
    run = check(server, tls, tmp_path, "--var", "allow_unsupported_roles=Fax")
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert 'does not support ("Sysprep Support for Server Roles"): AD-Certificate;' in str(
        run.report["message"]
    )
