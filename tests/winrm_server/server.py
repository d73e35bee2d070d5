"""The WinRM listener of the Windows test double: HTTP(S), Basic and NTLM, on loopback.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``); not
a WinRM implementation for users.

* ``POST /wsman`` only; SOAP faults are HTTP 500, bad or missing credentials HTTP 401
  with ``WWW-Authenticate: Negotiate`` and ``Basic realm="WSMAN"`` (as Windows offers).
* Basic: checked on every request. NTLM: pyspnego is the acceptor; the security
  context belongs to the TCP connection (keep-alive matters, as on Windows). Over HTTPS
  the client's channel binding token is checked against the listener certificate.
* NTLM message encryption (MS-WSMV 2.2.9.1.1, what pywinrm does over plain HTTP):
  ``multipart/encrypted`` bodies are unwrapped and the answers wrapped.
* Certificate (HTTPS only, when ``client_ca`` is given): the listener asks for a client
  certificate during the handshake but does not require one (Basic and NTLM still work
  on the same listener). A request with ``Authorization: <secprofile/https/mutual URI>``
  (what pywinrm's ``certificate`` transport sends) is the account its certificate's UPN
  is mapped to in ``cert_users`` (Windows' ``WSMan:\\localhost\\ClientCertificate``);
  no certificate or an unmapped one is HTTP 401, like a wrong password. A certificate
  that does not chain to ``client_ca`` fails the TLS handshake (OpenSSL's "unknown ca"
  alert): Windows' HTTP.sys behaviour for that case is not recorded, so this double
  picks the stricter answer.
* The machine powering off stops the listener (new connections are refused) and
  resets every open connection, including one waiting in a Receive.

pyspnego reads acceptor credentials only from the file named by ``NTLM_USER_FILE``;
:func:`ntlm_user_file_line` gives the line to write there (the tests' fixture sets it).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import spnego
import spnego.exceptions
from spnego.channel_bindings import GssChannelBindings

from tests.winrm_server.certs import TlsFiles, client_cert_upn
from tests.winrm_server.machine import PoweredOff, WindowsMachine
from tests.winrm_server.service import Stats, WinRsService
from tests.winrm_server.soap import Fault, parse_request

_BOUNDARY = b"--Encrypted Boundary"
_ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
_SOAP_TYPE = "application/soap+xml;charset=UTF-8"
# The Authorization header of WS-Management's HTTPS mutual (client certificate) profile.
CERTIFICATE_AUTH = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"


def ntlm_user_file_line(username: str, password: str) -> str:
    """The ``NTLM_USER_FILE`` line for a local account (no domain), as pyspnego reads it."""
    return f":{username}:{password}\n"


class WinRmTestServer:
    """A Windows machine's WinRM listener on 127.0.0.1, for tests (see module docstring)."""

    def __init__(
        self,
        machine: WindowsMachine | None = None,
        *,
        username: str = "Administrator",
        password: str = "Passw0rd!",  # noqa: S107  a test account of a test double
        auth: tuple[str, ...] = ("basic", "ntlm"),
        tls: TlsFiles | None = None,
        client_ca: Path | None = None,
        cert_users: Mapping[str, str] | None = None,
    ) -> None:
        self.machine = machine or WindowsMachine()
        self.username = username
        self.password = password
        self.auth = auth
        self.tls = tls
        self.client_ca = client_ca  # certificate authentication on when set (HTTPS)
        self.cert_users = {k.casefold(): v for k, v in (cert_users or {}).items()}  # UPN->user
        self.connections = 0  # TCP connections accepted
        self.encrypted_requests = 0  # requests that arrived NTLM-sealed
        self.requests = 0  # HTTP requests received (401 challenges included)
        # Fault injection: called after each Receive is handled; True resets the
        # connection instead of answering (the network failing mid-command).
        self.reset_receive: Callable[[], bool] | None = None
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._service: WinRsService | None = None
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/wsman"

    @property
    def service(self) -> WinRsService:
        assert self._service is not None, "server not started"
        return self._service

    @property
    def stats(self) -> Stats:
        return self.service.stats

    def start(self, port: int = 0) -> Self:
        httpd = _HttpServer(("127.0.0.1", port), _Handler)
        httpd.owner = self
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            if self.client_ca is not None:
                context.verify_mode = ssl.CERT_OPTIONAL
                context.load_verify_locations(self.client_ca)
            httpd.tls_context = context
            httpd.listener_der = ssl.PEM_cert_to_DER_cert(self.tls.cert.read_text())
        self._httpd = httpd
        self._service = WinRsService(self.machine, self.url)
        self.machine.on_power_off(self._power_off)
        self.machine.on_boot(self._boot)
        self._stopped.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering, kill every process, close every connection (idempotent)."""
        if self._stopped.is_set() or self._httpd is None:
            return
        self._stopped.set()
        # Connections first: a machine that lost power answers nothing more, not even
        # the end of the commands it was running.
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.abort_connections()
        self.service.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _power_off(self) -> None:
        self.stop()

    def _boot(self) -> None:
        """A reboot: the listener answers again on the same port, with no shells."""
        assert self._httpd is not None
        port = int(self._httpd.server_address[1])
        self.start(port)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: WinRmTestServer
    tls_context: ssl.SSLContext | None = None
    listener_der: bytes | None = None

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
            self.owner.connections += 1
        super().process_request(request, client_address)

    def track(self, old: socket.socket, new: socket.socket | None) -> None:
        """Replace ``old`` by ``new`` (or forget it) among the connections to reset."""
        with self._open_lock:
            self._open.discard(old)
            if new is not None:
                self._open.add(new)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def abort_connections(self) -> None:
        """Reset every open connection, as a machine that lost power does."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            _reset(sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up, failed TLS handshakes, power-off: all expected here.
        pass


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Abort(Exception):
    """Drop the connection without an answer."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        # Headers and body leave in separate writes; without this, Nagle and the
        # client's delayed ACK add 40 ms to every request.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = self.server.tls_context
        if context is not None:
            raw = self.request
            self.request = context.wrap_socket(raw, server_side=True)
            self.server.track(raw, self.request)
        super().setup()
        self.ntlm: Any = None  # spnego context of this connection
        self.ntlm_user: str | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if isinstance(self.request, ssl.SSLSocket):
                # wrap_socket detached the socket the server would close: close ours.
                self.server.track(self.request, None)
                self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests' output stays readable

    @property
    def owner(self) -> WinRmTestServer:
        return self.server.owner

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.owner.requests += 1
        if self.path != "/wsman":
            self._reply(404, b"", {})
            return
        user = self._authenticate()
        if user is None:
            return
        encrypted = self.headers.get("Content-Type", "").startswith("multipart/encrypted")
        try:
            if encrypted:
                body = self._unwrap(body)
                self.owner.encrypted_requests += 1
            if not body:
                # pywinrm's empty POST that sets up the encryption context.
                self._reply(200, b"", {}, encrypted=encrypted)
                return
            status, answer = self._answer(body, user)
            if not self.owner.machine.powered_on:
                raise _Abort
            self._reply(status, answer, {"Content-Type": _SOAP_TYPE}, encrypted=encrypted)
        except (_Abort, PoweredOff):
            _reset(self.connection)
            self.close_connection = True

    def _answer(self, body: bytes, user: str) -> tuple[int, bytes]:
        relates_to = ""
        try:
            request = parse_request(body)
            relates_to = request.message_id
            answer = self.owner.service.handle(request, user, self.client_address[0])
            reset = self.owner.reset_receive
            if request.action.endswith("/Receive") and reset is not None and reset():
                raise _Abort
            return 200, answer
        except Fault as fault:
            return 500, fault.render(relates_to, self.owner.machine.hostname)

    # -- authentication -------------------------------------------------------------------

    def _authenticate(self) -> str | None:
        """The user of this request, or None after answering 401."""
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.casefold()
        if scheme == "basic" and "basic" in self.owner.auth:
            user, _, password = base64.b64decode(value).decode("utf-8", "replace").partition(":")
            if (
                user.casefold() == self.owner.username.casefold()
                and password == self.owner.password
            ):
                return user
        elif scheme in ("negotiate", "ntlm") and "ntlm" in self.owner.auth:
            return self._ntlm_step(scheme, base64.b64decode(value))
        elif header == CERTIFICATE_AUTH and self.owner.client_ca is not None:
            cert_user = self._certificate_user()
            if cert_user is not None:
                return cert_user
        elif not header and self.ntlm_user is not None:
            return self.ntlm_user  # this connection authenticated earlier
        self._challenge()
        return None

    def _certificate_user(self) -> str | None:
        """The account the TLS client certificate is mapped to, if any."""
        if not isinstance(self.request, ssl.SSLSocket):
            return None
        der = self.request.getpeercert(binary_form=True)
        upn = client_cert_upn(der) if der else None
        return self.owner.cert_users.get(upn.casefold()) if upn else None

    def _ntlm_step(self, scheme: str, token: bytes) -> str | None:
        if token[8:12] == b"\x01\x00\x00\x00" or self.ntlm is None:  # NEGOTIATE_MESSAGE
            self.ntlm = spnego.server(protocol="ntlm", channel_bindings=self._channel_bindings())
        try:
            answer = self.ntlm.step(token)
        except spnego.exceptions.SpnegoError:
            self.ntlm = None
            self._challenge()
            return None
        if not self.ntlm.complete:
            header = f"{scheme.capitalize()} {base64.b64encode(answer or b'').decode()}"
            self._reply(401, b"", {"WWW-Authenticate": header})
            return None
        self.ntlm_user = str(self.ntlm.client_principal or self.owner.username)
        return self.ntlm_user

    def _channel_bindings(self) -> GssChannelBindings | None:
        # RFC 5929 tls-server-end-point: the hash of our certificate (SHA-256, its
        # signature hash), which a client that sends CBT computed from what it received.
        der = self.server.listener_der
        if der is None:
            return None
        return GssChannelBindings(
            application_data=b"tls-server-end-point:" + hashlib.sha256(der).digest()
        )

    def _challenge(self) -> None:
        offers = []
        if "ntlm" in self.owner.auth:
            offers.append("Negotiate")
        if "basic" in self.owner.auth:
            offers.append('Basic realm="WSMAN"')
        self._reply(401, b"", {"WWW-Authenticate": offers})

    # -- message encryption ---------------------------------------------------------------

    def _unwrap(self, body: bytes) -> bytes:
        if self.ntlm is None or not self.ntlm.complete:
            raise _Abort
        parts = [p for p in body.split(_BOUNDARY + b"\r\n") if p]
        if len(parts) < 2:
            raise _Abort
        payload = parts[1].removesuffix(_BOUNDARY + b"--\r\n")
        payload = payload.removeprefix(b"\tContent-Type: application/octet-stream\r\n")
        size = struct.unpack("<i", payload[:4])[0]
        signature, sealed = payload[4 : 4 + size], payload[4 + size :]
        try:
            return bytes(self.ntlm.unwrap(signature + sealed).data)
        except spnego.exceptions.SpnegoError as exc:
            raise _Abort from exc

    def _wrap(self, data: bytes) -> bytes:
        wrapped: bytes = self.ntlm.wrap(data, encrypt=True).data
        signature, sealed = wrapped[:16], wrapped[16:]
        return (
            _BOUNDARY + b"\r\n"
            b"\tContent-Type: " + _ENCRYPTED_PROTOCOL.encode() + b"\r\n"
            b"\tOriginalContent: type="
            + _SOAP_TYPE.encode()
            + b";Length="
            + str(len(data)).encode()
            + b"\r\n"
            + _BOUNDARY
            + b"\r\n"
            b"\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(signature))
            + signature
            + sealed
            + _BOUNDARY
            + b"--\r\n"
        )

    # -- replies --------------------------------------------------------------------------

    def _reply(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str | list[str]],
        *,
        encrypted: bool = False,
    ) -> None:
        if encrypted and body:
            body = self._wrap(body)
            headers = {
                "Content-Type": f'multipart/encrypted;protocol="{_ENCRYPTED_PROTOCOL}";'
                'boundary="Encrypted Boundary"'
            }
        self.send_response(status)
        for name, values in headers.items():
            for value in [values] if isinstance(values, str) else values:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
