"""Host tools the disk commands need, and the Debian package that brings each one."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from agent.errors import HostToolMissing, ToolFailed

PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debugfs": "e2fsprogs",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "sfdisk": "fdisk",
}


def require(*tools: str, purpose: str) -> dict[str, str]:
    """Absolute paths of `tools`; HostToolMissing naming the packages if any is missing."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for tool in tools:
        path = shutil.which(tool)
        if path is None:
            missing.append(tool)
        else:
            found[tool] = path
    if missing:
        packages = sorted({PACKAGES.get(tool, tool) for tool in missing})
        raise HostToolMissing(
            f"{purpose} needs {', '.join(missing)} on this machine "
            f"(Debian/Ubuntu: apt-get install {' '.join(packages)})"
        )
    return found


def run_tool(
    argv: Sequence[str], *, timeout: float = 600, what: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a host tool, capture its output; ToolFailed with its stderr on a non-zero exit."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"{what or argv[0]}: timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ToolFailed(
            f"{what or argv[0]} failed (exit {proc.returncode}): "
            f"{detail[-1] if detail else 'no output'}",
            stderr=proc.stderr,
        )
    return proc
