"""WinRM transports beyond ntlm and basic.

Certificate authentication is tested for real: the unchanged pywinrm client presents a
TLS client certificate to the Windows test double (``tests.winrm_server``), which maps
its UPN to an account. Kerberos and CredSSP are *not* tested against any server: only
that choosing them without their optional packages is a clear UsageError.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import winrm.transport
from click.testing import CliRunner

from agent.cli import main
from agent.errors import AuthenticationError, UsageError
from agent.executors.winrm import WinRmExecutor, WinRmOptions
from agent.outcome import ExitCode
from agent.secrets import Secret
from agent.targets import Target
from tests.winrm_server import (
    ClientCert,
    TlsFiles,
    WindowsMachine,
    WinRmTestServer,
    make_client_cert,
    make_tls_files,
)

USER = "Administrator"
UPN = "administrator@localhost"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def client(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> ClientCert:
    return make_client_cert(tls, tmp_path_factory.mktemp("client"), UPN)


@pytest.fixture
def server(tls: TlsFiles) -> Iterator[WinRmTestServer]:
    machine = WindowsMachine(time_scale=1.0)
    with WinRmTestServer(
        machine, username=USER, tls=tls, client_ca=tls.ca_cert, cert_users={UPN: USER}
    ) as running:
        yield running


def cert_executor(
    server: WinRmTestServer, tls: TlsFiles, cert: Path | None, key: Path | None
) -> WinRmExecutor:
    target = Target("winrm+https", USER, "127.0.0.1", server.port)
    options = WinRmOptions(
        transport="certificate", ca_cert=tls.ca_cert, client_cert=cert, client_key=key
    )
    return WinRmExecutor(target, options)


# -- certificate ----------------------------------------------------------------------


def test_mapped_client_certificate_runs_a_command(
    server: WinRmTestServer, tls: TlsFiles, client: ClientCert
) -> None:
    """A client certificate whose UPN is mapped to the account runs commands, no password."""
    with cert_executor(server, tls, client.cert, client.key) as winrm:
        result = winrm.run("Write-Output 'hello'")
    assert result.exit_code == 0
    assert result.stdout.strip() == "hello"


def test_unmapped_client_certificate_is_an_authentication_error(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path
) -> None:
    """A certificate from the trusted CA that no account is mapped to: HTTP 401."""
    stranger = make_client_cert(tls, tmp_path, "nobody@localhost")
    winrm = cert_executor(server, tls, stranger.cert, stranger.key)
    with pytest.raises(AuthenticationError, match="rejected the credentials"):
        winrm.connect()
    assert server.machine.scripts == []


def test_client_certificate_from_an_unknown_ca_is_refused(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path
) -> None:
    """A certificate the listener's CA did not sign fails the handshake: never runs."""
    other = make_tls_files(tmp_path)
    foreign = make_client_cert(other, tmp_path, UPN)
    winrm = cert_executor(server, tls, foreign.cert, foreign.key)
    with pytest.raises(AuthenticationError, match="refused the TLS client certificate"):
        winrm.connect()
    assert server.machine.scripts == []


def test_certificate_header_without_a_certificate_is_401(
    server: WinRmTestServer, tls: TlsFiles
) -> None:
    """The mutual-auth header alone (no TLS client certificate) authenticates nobody."""
    import requests

    response = requests.post(
        server.url,
        data=b"<x/>",
        headers={
            "Authorization": "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
        },
        verify=str(tls.ca_cert),
        timeout=5,
    )
    assert response.status_code == 401


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_certificate_transport_without_cert_or_key_is_a_usage_error(
    server: WinRmTestServer, tls: TlsFiles, client: ClientCert, missing: str
) -> None:
    cert = None if missing == "cert" else client.cert
    key = None if missing == "key" else client.key
    with pytest.raises(UsageError, match="client cert"):
        cert_executor(server, tls, cert, key)
    assert server.requests == 0


def test_cli_certificate_transport_needs_client_cert_flags(tls: TlsFiles, tmp_path: Path) -> None:
    """`imageprep run --winrm-transport certificate` without the files: exit 2, named flags."""
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--target",
            f"winrm+https://{USER}@127.0.0.1:1",
            "--winrm-transport",
            "certificate",
            "--ca-cert",
            str(tls.ca_cert),
            "--backup",
            "command:echo snap-0001",
            "--run-dir",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--client-cert" in result.output


def test_cli_run_with_a_client_certificate_generalizes(
    tls: TlsFiles, client: ClientCert, tmp_path: Path
) -> None:
    """`imageprep run --winrm-transport certificate --client-cert/--client-key`, no password."""
    machine = WindowsMachine(time_scale=0.01, sysprep_seconds=6.0)
    with WinRmTestServer(
        machine, username=USER, tls=tls, client_ca=tls.ca_cert, cert_users={UPN: USER}
    ) as server:
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--target",
                f"winrm+https://{USER}@127.0.0.1:{server.port}",
                "--winrm-transport",
                "certificate",
                "--client-cert",
                str(client.cert),
                "--client-key",
                str(client.key),
                "--ca-cert",
                str(tls.ca_cert),
                "--backup",
                "command:echo snap-0001",
                "--run-dir",
                str(tmp_path / "run"),
                "--log-format",
                "json",
                "--var",
                "sysprep_poll_seconds=1",
                # Not the default 2 minutes of real time watching for a reboot.
                "--var",
                "power_off_watch_seconds=1",
            ],
        )
    assert result.exit_code == ExitCode.OK, result.output
    assert machine.sysprep_runs
    assert not machine.powered_on


# -- kerberos and credssp: refused without their packages (never tested against a server)


@pytest.mark.parametrize(
    ("transport", "flag", "extra"),
    [
        ("kerberos", "HAVE_KERBEROS", "pywinrm[kerberos]"),
        ("credssp", "HAVE_CREDSSP", "pywinrm[credssp]"),
    ],
)
def test_transport_without_its_package_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, transport: str, flag: str, extra: str
) -> None:
    monkeypatch.setattr(winrm.transport, flag, False)
    target = Target("winrm+https", USER, "127.0.0.1", 5986)
    options = WinRmOptions(password=Secret("pw", "test"), transport=transport)  # type: ignore[arg-type]
    with pytest.raises(UsageError) as caught:
        WinRmExecutor(target, options)
    message = str(caught.value)
    assert f"pip install '{extra}'" in message
    assert transport in message
