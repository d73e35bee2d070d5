"""WinRmExecutor: the real, unchanged pywinrm client against the Windows test double.

Every test talks real WS-Management over real HTTP(S) on 127.0.0.1 to
``tests.winrm_server`` (a test double for a Windows machine), which is stopped after
each test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    Disconnected,
    TransferError,
    UsageError,
)
from agent.executors.base import Executor
from agent.executors.winrm import WinRmExecutor, WinRmOptions
from agent.executors.winrm import scripts as winrm_scripts
from agent.secrets import Secret
from agent.targets import Target
from tests.winrm_server import (
    TlsFiles,
    WindowsMachine,
    WinRmTestServer,
    make_tls_files,
    ntlm_user_file_line,
)
from tests.winrm_server import machine as win

USER = "Administrator"
PASSWORD = "Passw0rd!"  # noqa: S105  the test double's account


@pytest.fixture(autouse=True)
def ntlm_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspnego's NTLM acceptor reads its accounts from NTLM_USER_FILE."""
    users = tmp_path / "ntlm-users"
    users.write_text(ntlm_user_file_line(USER, PASSWORD))
    monkeypatch.setenv("NTLM_USER_FILE", str(users))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def machine() -> WindowsMachine:
    return WindowsMachine(time_scale=1.0, sysprep_seconds=0.2)


@pytest.fixture
def server(machine: WindowsMachine) -> Iterator[WinRmTestServer]:
    with WinRmTestServer(machine, username=USER, password=PASSWORD) as running:
        yield running


@pytest.fixture
def https_server(machine: WindowsMachine, tls_files: TlsFiles) -> Iterator[WinRmTestServer]:
    with WinRmTestServer(machine, username=USER, password=PASSWORD, tls=tls_files) as running:
        yield running


def executor(server: WinRmTestServer, password: str = PASSWORD, **options: object) -> WinRmExecutor:
    scheme = "winrm+https" if server.tls else "winrm"
    target = Target(scheme, USER, "127.0.0.1", server.port)
    settings = WinRmOptions(password=Secret(password, "test"), **options)  # type: ignore[arg-type]
    return WinRmExecutor(target, settings)


# -- commands ---------------------------------------------------------------------------


def test_is_an_executor_and_needs_connect_first(server: WinRmTestServer) -> None:
    """WinRmExecutor satisfies the Executor protocol and refuses to run before connect."""
    winrm = executor(server)
    assert isinstance(winrm, Executor)
    with pytest.raises(Disconnected, match="call connect first"):
        winrm.run("Write-Output 'x'")
    assert server.connections == 0


def test_command_stdout_stderr_and_exit_code(server: WinRmTestServer) -> None:
    """A command's stdout, stderr and exit code come back as text with LF line ends."""
    with executor(server) as winrm:
        result = winrm.run("Write-Output 'out'; [Console]::Error.WriteLine('err'); exit 3")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)


def test_interleaved_error_records_and_plain_stderr_keep_their_order(
    server: WinRmTestServer,
) -> None:
    """Error records and [Console]::Error lines arrive interleaved and decode in order."""
    script = (
        "Get-Content -LiteralPath 'C:\\missing.txt'\n"
        "[Console]::Error.WriteLine('plain between')\n"
        "Write-Error 'second problem'\n"
        "[Console]::Error.WriteLine('the last line says what to do')\n"
        "exit 1\n"
    )
    with executor(server) as ex:
        result = ex.run(script)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    # As powershell.exe prints a cmdlet's error record: "Cmdlet : message".
    first = "Get-Content : Cannot find path 'C:\\missing.txt' because it does not exist."
    assert (
        lines.index(first)
        < lines.index("plain between")
        < next(i for i, x in enumerate(lines) if "second problem" in x)
    )
    assert lines[-1] == "the last line says what to do"
    assert "Objs" not in result.stderr


def test_clixml_error_is_decoded(server: WinRmTestServer) -> None:
    """A PowerShell error arrives as CLIXML and is handed over as plain text."""
    with executor(server) as winrm:
        result = winrm.run("Write-Error 'the disk is on fire'")
    assert result.exit_code == 1
    assert "the disk is on fire" in result.stderr
    assert "CLIXML" not in result.stderr
    assert "_x000D_" not in result.stderr


def test_unknown_script_fails_like_powershell(server: WinRmTestServer) -> None:
    """A statement the double does not know fails as PowerShell's unknown command does."""
    with executor(server) as winrm:
        result = winrm.run("Get-Frobnicator -All")
    assert result.exit_code == 1
    assert "'Get-Frobnicator' is not recognized" in result.stderr


def test_unicode_output_survives_code_page_65001(server: WinRmTestServer) -> None:
    """Non-ASCII output is decoded from the shell's UTF-8 code page."""
    with executor(server) as winrm:
        assert winrm.run("Write-Output 'Grüße ✓ こんにちは'").stdout == "Grüße ✓ こんにちは\n"


def test_four_mib_of_stdout_arrive_complete(server: WinRmTestServer) -> None:
    """4 MiB written in one call arrive whole, over many Receives, with the right size."""
    size = 4 * 1024 * 1024
    with executor(server) as winrm:
        result = winrm.run(f"[Console]::Out.Write('x' * {size})", timeout=120)
    assert result.exit_code == 0
    assert result.stdout_bytes == size
    assert result.stdout == "x" * size


def test_progress_preference_is_prepended(server: WinRmTestServer, machine: WindowsMachine) -> None:
    """Scripts run with progress silenced, so no progress CLIXML reaches stderr."""
    with executor(server) as winrm:
        result = winrm.run(
            "(Get-FileHash -LiteralPath 'C:\\Windows\\System32\\cmd.exe' -Algorithm SHA256).Hash"
        )
    assert machine.scripts[-1].startswith("$ProgressPreference='SilentlyContinue'\n")
    assert result.stderr == ""


def test_on_output_and_stdout_sink(server: WinRmTestServer, tmp_path: Path) -> None:
    """on_output sees decoded chunks; stdout_sink receives the raw bytes instead of the result."""
    seen: list[tuple[str, str]] = []
    sink_path = tmp_path / "sink"
    with executor(server) as winrm, sink_path.open("wb") as sink:
        winrm.run("Write-Output 'a'; Write-Output 'b'", on_output=lambda s, t: seen.append((s, t)))
        sunk = winrm.run("Write-Output 'raw'", stdout_sink=sink)
    assert "".join(t for s, t in seen if s == "stdout") == "a\nb\n"
    assert sunk.stdout == ""
    assert sink_path.read_bytes() == b"raw\r\n"


def test_long_script_goes_through_stdin_with_its_digest(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """A script too long for cmd.exe arrives over stdin, digest-checked, and runs whole."""
    script = "\n".join(f"Write-Output 'line {i:04}'" for i in range(600))
    assert not winrm_scripts.fits_command_line(script)
    with executor(server) as winrm:
        result = winrm.run(script)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"line {i:04}" for i in range(600)]
    assert all(len(line) <= 8191 for line in server.stats.command_lines)
    assert "$imageprepDigest" in machine.scripts[-2]
    assert machine.scripts[-1] == winrm_scripts.PREAMBLE + script


def test_corrupted_long_script_is_refused(
    server: WinRmTestServer, machine: WindowsMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payload that arrives changed fails its SHA-256 check and never runs."""
    real_chunks = winrm_scripts.stdin_chunks

    def corrupted(payload: bytes) -> list[bytes]:
        chunks = real_chunks(payload)
        return [b"V3JpdGU" + chunks[0][7:], *chunks[1:]]

    monkeypatch.setattr(winrm_scripts, "stdin_chunks", corrupted)
    script = "\n".join(f"Write-Output 'line {i}'" for i in range(600))
    with executor(server) as winrm:
        result = winrm.run(script)
    assert result.exit_code == winrm_scripts.DIGEST_MISMATCH_EXIT
    assert "SHA-256" in result.stderr
    assert result.stdout == ""
    assert "$imageprepDigest" in machine.scripts[-1]  # only the bootstrap ran


def test_silent_command_is_repolled_after_operation_timeout(server: WinRmTestServer) -> None:
    """A command silent for longer than OperationTimeout is polled again, then completes."""
    with executor(server, operation_timeout=1, read_timeout=3) as winrm:
        result = winrm.run("Start-Sleep -Milliseconds 1600; Write-Output 'done'")
    assert result.stdout == "done\n"
    assert server.stats.timeouts >= 1


def test_deadline_raises_command_timeout_and_terminates(server: WinRmTestServer) -> None:
    """Past its deadline a command is signalled terminate, and CommandTimeout keeps its output."""
    with executor(server, operation_timeout=1, read_timeout=3) as winrm:
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as caught:
            winrm.run("Write-Output 'partial'; Start-Sleep 30; Write-Output 'never'", timeout=1.5)
        elapsed = time.monotonic() - started
        assert winrm.run("Write-Output 'still usable'").stdout == "still usable\n"
    assert elapsed < 10  # not the 30 s sleep; room for a starved CI worker
    assert caught.value.stdout == "partial\n"
    signal = server.stats.signals[0]
    assert signal.was_running
    assert signal.code.endswith("/signal/terminate")


# -- shells -----------------------------------------------------------------------------


def test_one_shell_is_reused_across_commands(server: WinRmTestServer) -> None:
    """Many commands share the run's one shell (and its one TCP connection)."""
    with executor(server) as winrm:
        for _ in range(3):
            winrm.run("Write-Output 'x'")
    assert server.stats.creates == 1
    assert server.connections == 1


def test_shell_is_deleted_on_close(server: WinRmTestServer) -> None:
    """Leaving the context deletes the shell on the target."""
    with executor(server) as winrm:
        winrm.run("Write-Output 'x'")
    assert server.stats.deletes == 1
    assert server.service.shells == {}


def test_shell_is_reopened_when_the_listener_forgets_it(server: WinRmTestServer) -> None:
    """A shell unknown to the listener (service restart) is replaced before the command starts."""
    with executor(server) as winrm:
        winrm.run("Write-Output 'before'")
        server.service.shutdown()  # the WinRM service restarted: every shell is gone
        assert winrm.run("Write-Output 'after'").stdout == "after\n"
    assert server.stats.creates == 2


# -- authentication and transport security ----------------------------------------------


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_bad_credentials_raise_authentication_error(
    https_server: WinRmTestServer, tls_files: TlsFiles, transport: str
) -> None:
    """HTTP 401 for a wrong password is an AuthenticationError, for NTLM and Basic."""
    winrm = executor(https_server, "wrong", transport=transport, ca_cert=tls_files.ca_cert)
    with pytest.raises(AuthenticationError, match="rejected the credentials"):
        winrm.connect()
    winrm.close()


def test_ntlm_over_http_encrypts_every_message(server: WinRmTestServer) -> None:
    """NTLM on plain HTTP seals each message with the session key (no clear text)."""
    with executor(server, transport="ntlm") as winrm:
        winrm.run("Write-Output 'secret'")
    assert server.encrypted_requests >= 4  # create, command, receive, signal


def test_plain_http_basic_is_refused_client_side(server: WinRmTestServer) -> None:
    """Basic on plain HTTP is refused before anything is sent, saying what to do instead."""
    with pytest.raises(UsageError, match="--allow-unencrypted"):
        executor(server, transport="basic")
    assert server.connections == 0


def test_plain_http_basic_with_allow_unencrypted(server: WinRmTestServer) -> None:
    """allow_unencrypted permits Basic on plain HTTP."""
    with executor(server, transport="basic", allow_unencrypted=True) as winrm:
        assert winrm.run("Write-Output 'ok'").stdout == "ok\n"


def test_https_with_unknown_ca_is_a_connect_error(https_server: WinRmTestServer) -> None:
    """A listener certificate from an unknown CA fails the connection, pointing at --ca-cert."""
    winrm = executor(https_server)
    with pytest.raises(ConnectError, match="--ca-cert"):
        winrm.connect()
    winrm.close()


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_https_with_ca_cert(
    https_server: WinRmTestServer, tls_files: TlsFiles, transport: str
) -> None:
    """Trusting the listener's CA with ca_cert makes HTTPS work (NTLM sends channel bindings)."""
    with executor(https_server, transport=transport, ca_cert=tls_files.ca_cert) as winrm:
        assert winrm.run("Write-Output 'ok'").stdout == "ok\n"
    assert https_server.encrypted_requests == 0  # TLS protects it; no double encryption


def test_insecure_skip_verify_connects_with_a_loud_warning(https_server: WinRmTestServer) -> None:
    """insecure_skip_verify skips certificate checks and says so at warning level."""
    with capture_logs() as logs:
        winrm = executor(https_server, insecure_skip_verify=True)
    with winrm:
        assert winrm.run("Write-Output 'ok'").stdout == "ok\n"
    assert any(
        e["event"] == "winrm.tls_verification_disabled" and e["log_level"] == "warning"
        for e in logs
    )


# -- the target going away ---------------------------------------------------------------


def test_target_going_away_mid_command_is_disconnected(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """A power-off while a command runs raises Disconnected and drops the shell."""
    timer = threading.Timer(0.3, machine.power_off)
    with executor(server) as winrm:
        timer.start()
        with pytest.raises(Disconnected):
            winrm.run("Start-Sleep 10", timeout=8)
        assert not winrm.is_connected()
    timer.join()


def test_shutdown_command_then_wait_disconnected(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """`shutdown /s /t 0` succeeds, and wait_disconnected sees the target go."""
    with executor(server) as winrm:
        assert winrm.run("shutdown /s /t 0").exit_code == 0
        assert winrm.wait_disconnected(5)
    assert not machine.powered_on


def test_connecting_to_a_stopped_target_is_a_connect_error(server: WinRmTestServer) -> None:
    """A refused connection before any shell existed is a ConnectError."""
    server.stop()
    winrm = executor(server)
    with pytest.raises(ConnectError, match="Connection refused"):
        winrm.connect()


# -- files ------------------------------------------------------------------------------


def test_put_then_get_round_trip(
    server: WinRmTestServer, machine: WindowsMachine, tmp_path: Path
) -> None:
    """put writes the exact bytes on the target and get brings them back."""
    data = bytes(range(256)) * 300
    source, copy = tmp_path / "unattend.xml", tmp_path / "copy.xml"
    source.write_bytes(data)
    remote = r"C:\Windows\Panther\unattend.xml"
    with executor(server) as winrm:
        winrm.put(source, remote)
        winrm.get(remote, copy)
    assert machine.read_file(remote) == data
    assert copy.read_bytes() == data


def test_get_of_a_missing_file_is_a_transfer_error(server: WinRmTestServer, tmp_path: Path) -> None:
    """get of a file that does not exist raises TransferError and leaves nothing behind."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with executor(server) as winrm, pytest.raises(TransferError, match="Could not find file"):
        winrm.get(r"C:\nope.txt", downloads / "nope.txt")
    assert list(downloads.iterdir()) == []


# -- the modelled Windows state ----------------------------------------------------------


def test_image_state_is_read_from_the_registry(server: WinRmTestServer) -> None:
    """ImageState reads as the machine model holds it."""
    script = (
        "(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Setup"
        "\\State' -Name ImageState).ImageState"
    )
    with executor(server) as winrm:
        assert winrm.run(script).stdout == "IMAGE_STATE_COMPLETE\n"


def test_sysprep_generalizes_the_machine(server: WinRmTestServer, machine: WindowsMachine) -> None:
    """sysprep.exe /generalize /oobe /quit moves ImageState to GENERALIZE_RESEAL_TO_OOBE."""
    with executor(server) as winrm:
        result = winrm.run(
            '& "$env:SystemRoot\\System32\\Sysprep\\Sysprep.exe" /generalize /oobe /quiet /quit'
        )
    assert result.exit_code == 0
    assert machine.image_state == win.IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE
    assert machine.file_exists(win.SUCCEEDED_TAG)
    assert machine.powered_on


def test_sysprep_fails_on_a_per_user_appx_package(
    server: WinRmTestServer, machine: WindowsMachine
) -> None:
    """An AppX package installed for a user but not provisioned leaves the image undeployable."""
    machine.appx_installed["Administrator"] = {"Microsoft.Copilot_1.0.0.0_x64__8wekyb3d8bbwe"}
    with executor(server) as winrm:
        winrm.run("& 'C:\\Windows\\System32\\Sysprep\\sysprep.exe' /generalize /oobe /quiet /quit")
        log = winrm.run(f"Get-Content -LiteralPath '{win.SETUPERR_LOG}' -Tail 5").stdout
    assert machine.image_state == win.IMAGE_STATE_UNDEPLOYABLE
    assert "was installed for a user, but not provisioned" in log
    assert not machine.file_exists(win.SUCCEEDED_TAG)
