"""Secrets: read from an environment variable or a file, never from argv, never printed.

A :class:`Secret` hides its value from ``repr``/``str`` so it cannot leak through a log
line or a traceback by accident; the logging pipeline additionally redacts every value
registered in :data:`REGISTRY` in every encoding it may take (see ``agent.logging``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import UsageError


@dataclass(frozen=True)
class Secret:
    value: str = field(repr=False)
    source: str  # "env:VAR" or "file:PATH", safe to show

    def __str__(self) -> str:
        return f"<secret from {self.source}>"


class SecretRegistry:
    """Every secret value this process knows, so the log redactor can remove them."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str) -> None:
        if value:
            self._values.add(value)

    def values(self) -> frozenset[str]:
        return frozenset(self._values)

    def clear(self) -> None:
        self._values.clear()


REGISTRY = SecretRegistry()


def secret_from_env(var: str, *, what: str) -> Secret:
    value = os.environ.get(var)
    if value is None:
        raise UsageError(f"{what}: environment variable {var} is not set")
    if value == "":
        raise UsageError(f"{what}: environment variable {var} is empty")
    REGISTRY.add(value)
    return Secret(value=value, source=f"env:{var}")


#: A secret file longer than this is not a password (and /dev/zero would never end).
MAX_SECRET_BYTES = 64 * 1024


def secret_from_file(path: Path, *, what: str) -> Secret:
    # Not only regular files: `--password-file <(pass show vm)` is a pipe, and fine.
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    if len(data) > MAX_SECRET_BYTES:
        raise UsageError(f"{what}: {path} is longer than {MAX_SECRET_BYTES} bytes")
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Never show the bytes: they are the secret.
        raise UsageError(f"{what}: {path} is not UTF-8 text (byte {exc.start + 1})") from None
    # One trailing newline is how editors and `echo` write files; it is not part of it.
    value = raw[:-1] if raw.endswith("\n") else raw
    if value == "":
        raise UsageError(f"{what}: {path} is empty")
    REGISTRY.add(value)
    return Secret(value=value, source=f"file:{path}")
