"""Host key verification against known_hosts files (no network: keys made in-process)."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.errors import HostKeyError
from agent.executors.ssh.hostkeys import (
    HostKeyPolicy,
    KnownHostsVerifier,
    entry_name,
    read_known_keys,
)


def ed25519_key() -> paramiko.PKey:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))


def line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


@pytest.fixture
def known(tmp_path: Path) -> Path:
    return tmp_path / "known_hosts"


def test_entry_name_brackets_non_default_ports() -> None:
    """Port 22 uses the bare host, other ports ``[host]:port``, as OpenSSH writes them."""
    assert (
        entry_name("h.example", 22),
        entry_name("h.example", 2222),
    ) == ("h.example", "[h.example]:2222")


def test_listed_key_is_accepted(known: Path) -> None:
    """A key listed for ``[host]:port`` passes."""
    key = ed25519_key()
    known.write_text(line("[10.0.0.5]:2222", key))
    KnownHostsVerifier(known, "10.0.0.5", 2222, "strict").verify(key)


def test_hashed_entry_is_read(known: Path) -> None:
    """A hashed (``|1|salt|hash``) entry matches its host."""
    key = ed25519_key()
    known.write_text(line(paramiko.HostKeys.hash_host("[10.0.0.5]:2222"), key))
    KnownHostsVerifier(known, "10.0.0.5", 2222, "strict").verify(key)


def test_entries_for_other_ports_do_not_match(known: Path) -> None:
    """An entry for ``host`` (port 22) says nothing about ``[host]:2222``."""
    known.write_text(line("10.0.0.5", ed25519_key()))
    assert read_known_keys(known, "[10.0.0.5]:2222") == []


def test_comments_markers_and_garbage_are_skipped(known: Path) -> None:
    """Comments, @cert-authority/@revoked lines and malformed lines are ignored."""
    key = ed25519_key()
    known.write_text(
        "# comment\n\n@cert-authority * ssh-ed25519 AAAA\nbroken line\n"
        "h ssh-ed25519 !!notbase64!!\n" + line("h", key)
    )
    assert [k.line for k in read_known_keys(known, "h")] == [6]


def test_unknown_host_strict_is_refused(known: Path) -> None:
    """Strict policy: an unknown host raises HostKeyError with its fingerprint; no file is made."""
    key = ed25519_key()
    with pytest.raises(HostKeyError) as caught:
        KnownHostsVerifier(known, "h", 2222, "strict").verify(key)
    assert (
        f"host key for h:2222 is not in {known} (fingerprint {key.fingerprint}); "
        "add it or use --host-key-policy accept-new"
    ) == str(caught.value)
    assert not known.exists()


def test_accept_new_appends_plain_entry_0600(tmp_path: Path) -> None:
    """accept-new creates the file (and its directory) 0600 and appends ``[host]:port``."""
    known = tmp_path / "ssh" / "known_hosts"
    key = ed25519_key()
    KnownHostsVerifier(known, "h", 2222, "accept-new").verify(key)
    assert line("[h]:2222", key) == known.read_text()
    assert known.stat().st_mode & 0o777 == 0o600
    KnownHostsVerifier(known, "h", 2222, "strict").verify(key)


def test_accept_new_keeps_existing_lines_intact(known: Path) -> None:
    """Appending to a file without a final newline starts a new line."""
    other = ed25519_key()
    known.write_text(line("other", other).rstrip("\n"))
    key = ed25519_key()
    KnownHostsVerifier(known, "h", 22, "accept-new").verify(key)
    assert line("other", other) + line("h", key) == known.read_text()


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_key_is_refused_under_both_policies(known: Path, policy: HostKeyPolicy) -> None:
    """A different key of a known type is refused, naming file, line and both fingerprints."""
    old, new = ed25519_key(), ed25519_key()
    known.write_text("# first\n" + line("[h]:2222", old))
    with pytest.raises(HostKeyError) as caught:
        KnownHostsVerifier(known, "h", 2222, policy).verify(new)
    message = str(caught.value)
    assert "CHANGED" in message
    assert f"{known} expects ssh-ed25519 {old.fingerprint} (line 2)" in message
    assert f"offered ssh-ed25519 {new.fingerprint}" in message
    assert line("[h]:2222", old) in known.read_text()


def test_key_of_a_type_not_known_is_treated_as_changed(known: Path) -> None:
    """A host known by an RSA key that now offers ed25519 is refused as changed."""
    known.write_text(line("h", paramiko.RSAKey.generate(2048)))
    with pytest.raises(HostKeyError, match="CHANGED"):
        KnownHostsVerifier(known, "h", 22, "accept-new").verify(ed25519_key())


@pytest.fixture
def transport() -> Iterator[paramiko.Transport]:
    left, right = socket.socketpair()
    t = paramiko.Transport(left)
    yield t
    t.close()
    left.close()
    right.close()


def test_known_types_are_negotiated_first(known: Path, transport: paramiko.Transport) -> None:
    """With only an RSA key known, the RSA signature algorithms come first in the offer."""
    default = list(transport.get_security_options().key_types)
    known.write_text(line("h", paramiko.RSAKey.generate(2048)))
    KnownHostsVerifier(known, "h", 22, "strict").prefer_known_types(transport)
    offered = list(transport.get_security_options().key_types)
    assert offered[:2] == ["rsa-sha2-512", "rsa-sha2-256"]
    assert sorted(default) == sorted(offered)


def test_unknown_host_keeps_default_order(known: Path, transport: paramiko.Transport) -> None:
    """Without known keys the algorithm order is paramiko's default."""
    default = list(transport.get_security_options().key_types)
    KnownHostsVerifier(known, "h", 22, "accept-new").prefer_known_types(transport)
    assert default == list(transport.get_security_options().key_types)
