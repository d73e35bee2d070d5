"""Resolve paths inside a guest root filesystem the way the guest would.

Two traps when a host process touches a guest tree at `root`:
- `root / "/etc/hostname"` is `/etc/hostname` on the HOST (pathlib drops `root` before an
  absolute part);
- Debian trees contain absolute symlinks (`/var/run -> /run`, `/var/lock -> /run/lock`), and
  following one from the host lands on the host's /run.
`guest_path` resolves every component inside `root`, so neither can escape it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

_MAX_SYMLINK_HOPS = 40


def guest_path(root: Path, path: str | PurePosixPath, *, follow_last: bool = True) -> Path:
    """The host path of guest path `path` under `root`, with symlinks resolved inside `root`.

    With follow_last=False a symlink in the final component is returned as the link itself
    (to replace or inspect the link rather than its target).
    """
    pending = list(PurePosixPath("/", path).parts[1:])
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink() and (pending or follow_last):
            hops += 1
            if hops > _MAX_SYMLINK_HOPS:
                raise OSError(f"too many symlinks resolving {path} under {root}")
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                resolved = []
                pending = list(target.parts[1:]) + pending
            else:
                pending = list(target.parts) + pending
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def guest_ids(root: Path, user: str) -> tuple[int, int]:
    """(uid, gid) of `user` from the guest's /etc/passwd: host names and ids may differ."""
    for line in guest_path(root, "/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise KeyError(f"no user {user!r} in {root}/etc/passwd")


def guest_gid(root: Path, group: str) -> int:
    """gid of `group` from the guest's /etc/group."""
    for line in guest_path(root, "/etc/group").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == group:
            return int(fields[2])
    raise KeyError(f"no group {group!r} in {root}/etc/group")
