"""Misbehaving peers on 127.0.0.1, for the hostile-input corpus.

Each is a small threaded TCP server speaking just enough of a protocol to be wrong in
one way: a closed port, an HTTP server behind ssh://, a server that accepts and never
speaks, a garbage SSH banner, and WinRM listeners answering 200 with HTML or garbage
XML, 500, a redirect, or TLS with a self-signed certificate. They are fakes of broken
peers, not of WinRM or SSH (the real protocols are tested against real servers).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

Handler = Callable[[socket.socket], None]


@dataclass(frozen=True)
class Peer:
    host: str
    port: int


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(handler: Handler, *, tls: ssl.SSLContext | None = None) -> Iterator[Peer]:
    """Accept connections on 127.0.0.1 and hand each to ``handler`` in a thread."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def one(conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            if tls is not None:
                conn = tls.wrap_socket(conn, server_side=True)
            conns.append(conn)
            handler(conn)
        with contextlib.suppress(OSError):
            conn.close()  # the handler is done: the peer hangs up

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conns.append(conn)
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield Peer("127.0.0.1", int(listener.getsockname()[1]))
    finally:
        stop.set()
        thread.join(2)
        listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()


def _read_request(conn: socket.socket) -> bytes:
    """One HTTP request: headers and a Content-Length body (enough for pywinrm)."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def http_answer(status: str, body: bytes, content_type: str, extra: str = "") -> Handler:
    """Answer every request on the connection with the same response (keep-alive)."""

    def handler(conn: socket.socket) -> None:
        while _read_request(conn):
            conn.sendall(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )

    return handler


def silent(conn: socket.socket) -> None:
    """Accept and never speak (until the client gives up)."""
    conn.settimeout(60)
    with contextlib.suppress(OSError):
        while conn.recv(4096):
            pass


def garbage_banner(conn: socket.socket) -> None:
    """Send lines that are no SSH banner, then close."""
    conn.sendall(b"\x00\xff garbage \x01\r\n" * 3 + b"SSH-9.9-\xff\xfe\r\n")
    with contextlib.suppress(OSError):
        conn.recv(4096)


HTML = b"<html><body><h1>It works!</h1></body></html>"
GARBAGE_XML = b"<?xml version='1.0'?><s:Envelope xmlns:s='x'><s:Body><<garbage"
HTTP_ANSWER = http_answer("200 OK", HTML, "text/html")


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile-peer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "peer.crt", directory / "peer.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context
