"""Translate pywinrm, requests and pyspnego errors into :mod:`agent.errors`.

pywinrm raises from three unrelated trees, none of which is a common base:
``winrm.exceptions.WinRMError`` (with ``WSManFaultError`` and ``InvalidCredentialsError``),
``WinRMTransportError`` and ``WinRMOperationTimeoutError`` (both plain ``Exception``), and
lets ``requests`` exceptions (connection refused or reset, TLS, read time-out) and
requests_ntlm's ``PermissionError`` and pyspnego's errors through unwrapped. It also uses
``assert`` and ``next()`` on responses, so a malformed answer is an ``AssertionError`` or
``StopIteration``. :class:`WinRmErrors` maps all of them at this boundary.

Whether a network failure is ``ConnectError`` or ``Disconnected`` depends on whether the
executor had a shell open: refused while connecting means "cannot reach"; refused or reset
once a shell existed means the target went away (a reboot or power-off), which the engine
may expect.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from types import TracebackType

import requests.exceptions as rex
import spnego.exceptions
import winrm.exceptions as wex

from agent.errors import (
    AuthenticationError,
    ConnectError,
    Disconnected,
    ImagePrepError,
    TransportError,
)

# WSManFault code of w:InvalidSelectors: the shell (or command) id is unknown to the
# listener, as after a reboot or a WinRM service restart.
INVALID_SELECTORS = 2150858843


class ShellGone(Disconnected):
    """The listener no longer knows our shell: a new one must be opened."""


_REASONS = (
    r"\[Errno -?\d+\] ([^'\")\]]+)",
    r"(Remote end closed connection without response)",
    r"(certificate verify failed: [^('\")]+)",
    r"(Read timed out)",
    r"(Connection aborted)",
    r"(hostname '[^']+' doesn't match[^'\")]*)",
)


# TLS alerts a listener sends when it rejects the client certificate during the handshake
# (OpenSSL names; decrypt error: a certificate claiming a trusted issuer's name, unsigned by it).
_CLIENT_CERT_ALERT = re.compile(
    r"(?:TLSV1|TLSV13|SSLV3)_ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_REQUIRED|"
    r"CERTIFICATE_UNKNOWN|DECRYPT_ERROR|UNSUPPORTED_CERTIFICATE|CERTIFICATE_EXPIRED)"
)


def reason(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 message (they nest five levels deep)."""
    text = str(exc)
    for pattern in _REASONS:
        match = re.search(pattern, text)
        if match is not None:
            return match.group(1).strip().rstrip(".")
    return text.strip() or type(exc).__name__


_LIBRARIES = ("/winrm/", "/requests_ntlm/", "/spnego/", "/requests/", "/urllib3/")


def _raised_in_library(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is pywinrm's or a library it uses (not ours)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename.replace("\\", "/")
    return any(part in filename for part in _LIBRARIES)


class WinRmErrors:
    """Context manager: anything pywinrm & co. raise becomes an :mod:`agent.errors` error.

    ``action`` completes "… while {action}" in messages; ``connected`` says whether a
    shell was open when the block started (see module docstring).
    """

    def __init__(
        self,
        endpoint: str,
        action: str,
        *,
        connected: bool,
        read_timeout: int,
        connect_timeout: float | None = None,
        client_cert: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.action = action
        self.connected = connected
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        # A client certificate was presented: with TLS 1.3 the listener's rejection of it
        # may reach us as a bare EOF instead of its alert (the client already sent data).
        self.client_cert = client_cert

    def __enter__(self) -> WinRmErrors:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, ImagePrepError) or not isinstance(exc, Exception):
            return
        mapped = self.translate(exc)
        if mapped is not None:
            raise mapped from exc

    def translate(self, exc: Exception) -> ImagePrepError | None:
        where, action = self.endpoint, self.action
        if isinstance(exc, wex.AuthenticationError | spnego.exceptions.SpnegoError):
            return AuthenticationError(f"{where} rejected the credentials while {action}")
        if isinstance(exc, PermissionError):  # requests_ntlm: no NTLM challenge offered
            return AuthenticationError(f"{where} refused NTLM authentication: {exc}")
        if isinstance(exc, rex.SSLError):
            alert = _CLIENT_CERT_ALERT.search(str(exc))
            eof = self.client_cert and "EOF occurred in violation of protocol" in str(exc)
            if alert is not None or eof:  # the listener, not our verification, ended TLS
                what = alert.group(1).lower().replace("_", " ") if alert else "connection closed"
                return AuthenticationError(
                    f"{where} refused the TLS client certificate while {action} "
                    f"({what}): it must chain to a CA the listener trusts and be mapped to "
                    "the account"
                )
            return ConnectError(
                f"TLS with {where} failed ({reason(exc)}); pass the listener's CA or "
                "self-signed certificate with --ca-cert"
            )
        if isinstance(exc, rex.RequestException):
            return self._network(exc)
        if isinstance(exc, wex.WSManFaultError):
            return self._fault(exc)
        if isinstance(exc, wex.WinRMOperationTimeoutError):
            error = f"the WinRM service on {where} did not answer within OperationTimeout"
            return self._lost_or_unreachable(f"{error} while {action}")
        if isinstance(exc, wex.WinRMTransportError):
            return TransportError(f"HTTP {exc.code} from {where} while {action}")
        if isinstance(exc, wex.WinRMError):
            return TransportError(f"WinRM error from {where} while {action}: {exc}")
        if isinstance(exc, AssertionError | StopIteration | ET.ParseError | ValueError):
            return TransportError(f"malformed WinRM answer from {where} while {action}")
        if isinstance(exc, AttributeError) and _raised_in_library(exc):
            # pywinrm's message encryption reads the NTLM session keys, which do not
            # exist when the server answered without ever asking to authenticate (a
            # plain web server answering 200): AttributeError on None.
            message = (
                f"{where} answered without NTLM authentication while {action}: "
                "not a WinRM listener, or one that does not ask for credentials"
            )
            return TransportError(message) if self.connected else ConnectError(message)
        return None

    def _network(self, exc: rex.RequestException) -> ImagePrepError:
        where, action = self.endpoint, self.action
        if isinstance(exc, rex.ReadTimeout):
            # requests cannot tell which of its two time-outs ran out (a TLS handshake
            # that stalls counts against the connect one): name both.
            limits = f"{self.read_timeout} s" + (
                f" (or {self.connect_timeout:g} s to connect)" if self.connect_timeout else ""
            )
            message = f"no answer from {where} within {limits} while {action}"
        elif isinstance(exc, rex.ConnectTimeout):
            message = f"timed out connecting to {where} while {action}"
        elif isinstance(exc, rex.ConnectionError):
            message = f"connection to {where} failed while {action}: {reason(exc)}"
        else:
            return TransportError(f"HTTP request to {where} failed while {action}: {reason(exc)}")
        return self._lost_or_unreachable(message)

    def _lost_or_unreachable(self, message: str) -> ImagePrepError:
        return Disconnected(message) if self.connected else ConnectError(message)

    def _fault(self, exc: wex.WSManFaultError) -> ImagePrepError:
        detail = f"{exc.reason.strip()} (WSManFault {exc.wsman_fault_code}, {exc.fault_subcode})"
        if exc.wsman_fault_code == INVALID_SELECTORS:
            return ShellGone(
                f"{self.endpoint} no longer knows our WinRS shell (restarted?) "
                f"while {self.action}: {detail}"
            )
        message = f"WinRM fault from {self.endpoint} while {self.action}: {detail}"
        return TransportError(message) if self.connected else ConnectError(message)
