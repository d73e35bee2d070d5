"""Files replaced whole: a reader sees the old file or the new one, never a torn one.

result.json and fleet.json are rewritten as a run goes; a temporary file beside the
target, renamed over it, makes each rewrite atomic. ``durable`` adds the fsync before the
rename that makes it survive a power loss too (the rewrites people rely on after a crash).
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_text(path: Path, text: str, *, durable: bool) -> None:
    """Replace ``path`` by ``text`` (UTF-8) through ``path``'s ``.tmp`` sibling; OSError."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
    tmp.replace(path)


def fsync_path(path: Path) -> None:
    """fsync the file or directory at ``path`` (a directory: the names in it, after a rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
