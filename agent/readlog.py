"""Which files and directory listings a piece of work read, to key a cache on them.

While :func:`recording` is active (in this thread or task), every file read through
:func:`agent.safefiles.read_regular` and every listing passed to :func:`note_listing` is
recorded with a digest of its bytes. The catalog cache (agent.catalog_cache) stores that
record with the catalog and takes the catalog again only while every file still has
the same bytes and every listing the same names: a new kind of file the catalog reads
(a step's ``run_file:`` script) is covered without the cache knowing about it.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

try:  # CPython's own BLAKE2: `import hashlib` would first start OpenSSL (a few ms per start)
    from _blake2 import blake2b
except ImportError:  # another interpreter
    from hashlib import blake2b

__all__ = ["ReadLog", "digest", "note_file", "note_listing", "recording"]


@dataclass
class ReadLog:
    """Absolute path -> digest of what was read; directory -> the names it listed."""

    files: dict[str, str] = field(default_factory=dict)
    listings: dict[str, list[str]] = field(default_factory=dict)


_active: contextvars.ContextVar[ReadLog | None] = contextvars.ContextVar(
    "imageprep_readlog", default=None
)


def digest(data: bytes) -> str:
    """The digest a read is recorded (and later compared) with."""
    return blake2b(data, digest_size=32).hexdigest()


@contextmanager
def recording() -> Iterator[ReadLog]:
    """Record every read inside the ``with`` block into the yielded log."""
    log = ReadLog()
    token = _active.set(log)
    try:
        yield log
    finally:
        _active.reset(token)


def note_file(path: Path, data: bytes) -> None:
    """Record that ``path`` was read and had ``data`` (no-op outside :func:`recording`)."""
    log = _active.get()
    if log is not None:
        log.files[str(Path(path).absolute())] = digest(data)


def note_listing(directory: Path) -> None:
    """Record every name in ``directory`` (no-op outside :func:`recording`).

    All names, not only those the reader picked: any file added or removed there changes
    the listing, whatever the reader does with it.
    """
    log = _active.get()
    if log is not None:
        log.listings[str(Path(directory).absolute())] = sorted(os.listdir(directory))
