"""WinRmOptions and the checks that turn a target + options into pywinrm arguments.

Every refusal happens here, before anything is sent: plain HTTP without message
encryption, a missing password, a transport whose extra is not installed, contradictory
TLS settings. Each is a :class:`~agent.errors.UsageError` that says what to do instead.
No transport library is imported at module level.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.errors import UsageError
from agent.executors.winrm.output import codec_for
from agent.secrets import Secret
from agent.targets import Target

WinRmTransport = Literal["ntlm", "basic", "kerberos", "credssp", "certificate"]
TRANSPORTS: tuple[WinRmTransport, ...] = ("ntlm", "basic", "kerberos", "credssp", "certificate")
# Transports whose session keys pywinrm uses to encrypt every message on plain HTTP.
ENCRYPTING: frozenset[str] = frozenset({"ntlm", "kerberos", "credssp"})


@dataclass(frozen=True)
class WinRmOptions:
    """How to authenticate to a Windows target and which certificates to trust.

    ``password`` is needed by ntlm, basic and credssp (kerberos uses the ticket cache,
    certificate the client key pair). ``ca_cert`` is the CA (or the listener's own
    self-signed certificate) that HTTPS must chain to; without it the system trust store
    is used. ``insecure_skip_verify`` disables verification (logged loudly).
    ``allow_unencrypted`` permits basic or certificate-less plain HTTP, which sends the
    password and every command in clear text. Timeouts are whole seconds, as pywinrm
    requires, with ``read_timeout > operation_timeout >= 1``. ``codepage`` is the WinRS
    shell's output code page (65001 = UTF-8).
    """

    password: Secret | None = None
    transport: WinRmTransport = "ntlm"
    ca_cert: Path | None = None
    insecure_skip_verify: bool = False
    allow_unencrypted: bool = False
    operation_timeout: int = 20
    read_timeout: int = 30
    codepage: int = 65001
    # The shell's IdleTimeOut asked for at Create (WinRM caps it by its own IdleTimeout).
    shell_idle_timeout: int = 7200
    # Seconds between touches of the shell holding the lock on the VM (vmlock), which
    # sees no traffic of its own: WinRM deletes a shell idle past its IdleTimeout.
    lock_keepalive: float = 60.0
    # Secrets the run's shell gets as environment variables (inside the encrypted Create
    # request, never on a command line): the OOBE administrator password.
    shell_environment: Mapping[str, Secret] = field(default_factory=dict)
    client_cert: Path | None = None  # transport "certificate"
    client_key: Path | None = None
    connect_timeout: float = 15.0  # seconds to establish the TCP (and TLS) connection


@dataclass(frozen=True)
class Settings:
    """What the executor needs, checked; ``protocol_kwargs`` go to winrm.Protocol."""

    endpoint: str
    encrypted: bool  # by TLS or by message encryption
    protocol_kwargs: dict[str, Any]


def settings(target: Target, options: WinRmOptions) -> Settings:
    """Check ``options`` against ``target`` and build pywinrm's arguments (UsageError)."""
    if target.scheme not in ("winrm", "winrm+https"):
        raise UsageError(f"target {target.display}: not a winrm:// or winrm+https:// target")
    https = target.scheme == "winrm+https"
    _check_authentication(target.display, options, https)
    _check_transport_options(target.display, options)
    scheme = "https" if https else "http"
    host = f"[{target.host}]" if ":" in target.host else target.host
    encrypted = https or options.transport in ENCRYPTING
    return Settings(
        f"{scheme}://{host}:{target.port}/wsman", encrypted, _pywinrm_kwargs(target, options)
    )


def _check_authentication(where: str, options: WinRmOptions, https: bool) -> None:
    """The transport is known and installed, has its credentials, and is safe on the wire."""
    transport = options.transport
    if transport not in TRANSPORTS:
        raise UsageError(
            f"{where}: unknown WinRM transport {transport!r} ({', '.join(TRANSPORTS)})"
        )
    _check_extras(where, transport)
    if transport in ("ntlm", "basic", "credssp") and options.password is None:
        raise UsageError(f"{where}: transport {transport} needs a password (--password-env/-file)")
    if transport == "certificate":
        if not https:
            raise UsageError(f"{where}: certificate authentication needs winrm+https://")
        if options.client_cert is None or options.client_key is None:
            raise UsageError(
                f"{where}: certificate authentication needs a client cert and key "
                "(--client-cert FILE --client-key FILE, PEM)"
            )
        for path in (options.client_cert, options.client_key):
            if not path.is_file():
                raise UsageError(f"{where}: client certificate file {path} is not readable")
    if not https and transport not in ENCRYPTING and not options.allow_unencrypted:
        raise UsageError(
            f"{where}: plain HTTP with {transport} authentication would send the password and "
            "every command in clear text; use winrm+https://, or transport ntlm, kerberos or "
            "credssp (encrypted messages), or allow it explicitly with --allow-unencrypted"
        )


def _check_transport_options(where: str, options: WinRmOptions) -> None:
    """Certificate verification, time-outs and code page are consistent and known."""
    if options.insecure_skip_verify and options.ca_cert is not None:
        raise UsageError(f"{where}: --ca-cert and --insecure-skip-verify contradict each other")
    if options.ca_cert is not None and not options.ca_cert.is_file():
        raise UsageError(f"{where}: CA certificate {options.ca_cert} is not a readable file")
    if not options.read_timeout > options.operation_timeout >= 1:
        raise UsageError(
            f"{where}: WinRM timeouts must satisfy read_timeout > operation_timeout >= 1 "
            f"(got {options.read_timeout} and {options.operation_timeout})"
        )
    try:
        codec_for(options.codepage)
    except LookupError as exc:
        raise UsageError(f"{where}: code page {options.codepage} is unknown here") from exc


def _pywinrm_kwargs(target: Target, options: WinRmOptions) -> dict[str, Any]:
    """pywinrm's ``Protocol`` arguments for checked options."""
    kwargs: dict[str, Any] = {
        "transport": options.transport,
        "username": target.user,
        "password": options.password.value if options.password is not None else None,
        "server_cert_validation": "ignore" if options.insecure_skip_verify else "validate",
        # Never REQUESTS_CA_BUNDLE or proxy variables: pywinrm reads them only in its
        # deprecated "legacy_requests" mode, which also warns.
        "ca_trust_path": str(options.ca_cert) if options.ca_cert is not None else None,
        "proxy": None,
        "read_timeout_sec": options.read_timeout,
        "operation_timeout_sec": options.operation_timeout,
        "message_encryption": "auto",  # encrypt on HTTP when the transport can
    }
    if options.transport == "certificate":
        kwargs["cert_pem"] = str(options.client_cert)
        kwargs["cert_key_pem"] = str(options.client_key)
    return kwargs


def _check_extras(where: str, transport: str) -> None:
    # Imported here, not at the top: this module is imported by planning and the CLI,
    # which must not load pywinrm (tests/unit/test_offline_imports.py).
    import winrm.transport

    missing = {
        "kerberos": (winrm.transport.HAVE_KERBEROS, "pywinrm[kerberos]"),
        "credssp": (winrm.transport.HAVE_CREDSSP, "pywinrm[credssp]"),
        "ntlm": (winrm.transport.HAVE_NTLM, "requests-ntlm"),
    }.get(transport)
    if missing is not None and not missing[0]:
        raise UsageError(
            f"{where}: WinRM transport {transport} needs an optional package that is not "
            f"installed: pip install '{missing[1]}'"
        )
