"""Overlay mounts, and deleting trees only when nothing is mounted inside them.

`shutil.rmtree` happily descends into mount points. A tree that still has a mount below it
(an overlay we failed to unmount, the /proc or /dev an interrupted mmdebstrap left in its
chroot) must never be removed that way: it would delete through into another filesystem.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from tests.targets.commands import CommandFailed, run

_UNMOUNT_ATTEMPTS = 5


class StillMounted(RuntimeError):
    """A tree was not removed because something is still mounted inside it."""


def mount_points_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, as the kernel lists them for this process."""
    base = os.path.realpath(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = _unescape(line.split()[4])
        if mount_point == base or mount_point.startswith(base.rstrip("/") + "/"):
            found.append(Path(mount_point))
    return found


def overlays_using(lower: Path) -> list[Path]:
    """Mount points of overlays that have `lower` as their lower dir."""
    option = f"lowerdir={os.path.realpath(lower)}"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        filesystem, super_options = fields[separator + 1], fields[separator + 3]
        if filesystem == "overlay" and option in super_options.split(","):
            found.append(Path(_unescape(fields[4])))
    return found


def mount_overlay(lower: Path, upper: Path, work: Path, merged: Path) -> None:
    """Mount an overlay of `lower` (read-only, shared) and `upper` (this target's diff)."""
    for directory in (lower, upper, work, merged):
        if "," in str(directory) or ":" in str(directory):
            raise ValueError(f"overlayfs cannot take a path with ',' or ':' in it: {directory}")
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    run(["mount", "-t", "overlay", "overlay", "-o", options, merged], timeout=30)


def unmount(path: Path) -> None:
    """Unmount `path`; retry while busy, then detach lazily so teardown always completes."""
    for attempt in range(_UNMOUNT_ATTEMPTS):
        if not mount_points_under(path):
            return
        try:
            run(["umount", path], timeout=30)
            return
        except CommandFailed:
            time.sleep(0.2 * (attempt + 1))
    run(["umount", "--lazy", path], timeout=30)


def remove_tree(path: Path) -> None:
    """Delete `path` recursively, refusing if anything is mounted at or below it."""
    if not path.exists() and not path.is_symlink():
        return
    mounted = mount_points_under(path)
    if mounted:
        raise StillMounted(f"not removing {path}: still mounted below it: {mounted}")
    shutil.rmtree(path)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)
