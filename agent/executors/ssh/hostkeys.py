"""Host key verification against an OpenSSH known_hosts file.

paramiko's own check is not used (no keys are loaded into the ``SSHClient``, so it always
defers to our ``MissingHostKeyPolicy``): it compares only the first known key of a type,
ignores a second line for the same host, and would treat accept-new and "changed" the way
``AutoAddPolicy`` does. Here:

* The entry name is ``host`` for port 22 and ``[host]:port`` otherwise, as OpenSSH writes.
  Plain and hashed (``|1|salt|hash``) names are both read. Wildcard patterns and
  ``@cert-authority``/``@revoked`` lines are not supported and are skipped.
* Host key algorithms are *ordered* so that the types known for the host come first (as
  OpenSSH does): a host that has an ed25519 and an RSA key, with only RSA known, then
  negotiates RSA and is checked against it. A host that offers a key of a type not
  known for it (while other types are known) is treated as CHANGED and refused: it no
  longer has the key we know, and accepting another type would let an impostor in. We
  order instead of restricting so the error can name the offered key's fingerprint.
* A changed key is refused under every policy; accept-new only adds keys for hosts that
  have no entry at all, appending a plain line to the file (created 0600 if needed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko
import structlog

from agent.errors import HostKeyError

HostKeyPolicy = Literal["strict", "accept-new"]

log = structlog.get_logger(__name__)

# known_hosts names the key type; RSA keys are negotiated as SHA-2 signature algorithms.
_ALGORITHMS_BY_TYPE = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


@dataclass(frozen=True)
class KnownKey:
    """One key that known_hosts lists for the host, with its line for messages."""

    key: paramiko.PKey
    line: int

    @property
    def description(self) -> str:
        return f"{self.key.get_name()} {self.key.fingerprint} (line {self.line})"


def entry_name(host: str, port: int) -> str:
    """The name OpenSSH uses for this host in known_hosts."""
    return host if port == 22 else f"[{host}]:{port}"


def _name_matches(name: str, pattern: str) -> bool:
    if not pattern.startswith("|1|"):
        return pattern == name
    try:
        return paramiko.HostKeys.hash_host(name, pattern) == pattern
    except (ValueError, AssertionError):  # a malformed salt: not a match
        return False


def _parse_line(text: str, lineno: int) -> paramiko.hostkeys.HostKeyEntry | None:
    try:
        return paramiko.hostkeys.HostKeyEntry.from_line(text, lineno)
    except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError):
        return None


def read_known_keys(path: Path, name: str) -> list[KnownKey]:
    """Every key ``path`` lists for ``name``; a missing file lists none."""
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise HostKeyError(f"cannot read known hosts file {path}: {exc.strerror}") from exc
    found = []
    for lineno, raw in enumerate(content.splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith(("#", "@")):
            continue
        entry = _parse_line(text, lineno)
        if entry is not None and any(_name_matches(name, p) for p in entry.hostnames):
            found.append(KnownKey(entry.key, lineno))
    return found


def append_known_key(path: Path, name: str, key: paramiko.PKey) -> None:
    """Append one plain ``name type base64`` line, creating the file 0600 if needed."""
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as handle:
            if handle.tell() > 0 and not _ends_with_newline(path):
                line = "\n" + line
            handle.write(line.encode("ascii"))
    except OSError as exc:
        raise HostKeyError(f"cannot record the host key in {path}: {exc.strerror}") from exc


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class KnownHostsVerifier:
    """Checks one host's key against one known_hosts file under one policy."""

    def __init__(self, path: Path, host: str, port: int, policy: HostKeyPolicy) -> None:
        self.path = path
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.name = entry_name(host, port)
        self.policy = policy
        self.known = read_known_keys(path, self.name)

    def prefer_known_types(self, transport: paramiko.Transport) -> None:
        """Put the host key algorithms of the known types first (see module docstring)."""
        if not self.known:
            return
        known_types = {k.key.get_name() for k in self.known}
        wanted = {a for t in known_types for a in _ALGORITHMS_BY_TYPE.get(t, (t,))}
        options = transport.get_security_options()
        current = list(options.key_types)
        options.key_types = [a for a in current if a in wanted] + [
            a for a in current if a not in wanted
        ]

    def verify(self, offered: paramiko.PKey) -> None:
        """Accept ``offered`` or raise HostKeyError; under accept-new record a new host."""
        if any(k.key.asbytes() == offered.asbytes() for k in self.known):
            return
        if self.known:
            raise self._changed(offered)
        if self.policy == "strict":
            raise HostKeyError(
                f"host key for {self.address} is not in {self.path} "
                f"(fingerprint {offered.fingerprint}); "
                "add it or use --host-key-policy accept-new"
            )
        append_known_key(self.path, self.name, offered)
        log.info(
            "ssh.host_key_added",
            host=self.address,
            known_hosts=str(self.path),
            key_type=offered.get_name(),
            fingerprint=offered.fingerprint,
        )

    def _changed(self, offered: paramiko.PKey) -> HostKeyError:
        expected = "; ".join(k.description for k in self.known)
        return HostKeyError(
            f"host key for {self.address} has CHANGED and is refused: {self.path} expects "
            f"{expected}, the host offered {offered.get_name()} {offered.fingerprint}. "
            "If the host was rebuilt on purpose, remove the old entry with "
            f"ssh-keygen -R '{self.name}' -f {self.path}"
        )

    def as_policy(self) -> paramiko.MissingHostKeyPolicy:
        return _VerifyingPolicy(self)


class _VerifyingPolicy(paramiko.MissingHostKeyPolicy):
    """paramiko calls this for every key, since no keys are loaded into the client."""

    def __init__(self, verifier: KnownHostsVerifier) -> None:
        self._verifier = verifier

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self._verifier.verify(key)
