"""What `qemu-img info` says about a disk image, and waiting until no VM holds it."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.disks.tools import require, run_tool
from agent.errors import DiskError, ToolFailed

MIB = 1 << 20
FORMATS = ("raw", "qcow2")
# qemu takes a lock on every image it opens for writing; qemu-img then refuses to open it.
_LOCKED = "lock"
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class DiskInfo:
    """One image file: its format, virtual size and the backing files under it."""

    path: Path
    format: str
    virtual_size: int
    backing_chain: tuple[Path, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "virtual_size": self.virtual_size,
            "backing_chain": [str(p) for p in self.backing_chain],
        }


def disk_info(path: Path, *, wait_released: float = 0.0) -> DiskInfo:
    """`qemu-img info` of `path`; waits up to `wait_released` s while a running VM holds it."""
    if not path.is_file():
        raise DiskError(f"{path}: no such disk image file")
    qemu_img = require("qemu-img", purpose="reading a disk image")["qemu-img"]
    deadline = time.monotonic() + wait_released
    while True:
        try:
            proc = run_tool(
                [qemu_img, "info", "--output=json", "--backing-chain", str(path)],
                timeout=60,
                what=f"qemu-img info {path}",
            )
            break
        except ToolFailed as exc:
            if _LOCKED not in exc.stderr or time.monotonic() >= deadline:
                if _LOCKED in exc.stderr:
                    raise DiskError(
                        f"{path} is still in use by a running VM (qemu holds its lock); "
                        "power the VM off first"
                    ) from exc
                raise
            time.sleep(_POLL_SECONDS)
    chain: list[dict[str, Any]] = json.loads(proc.stdout)
    top = chain[0]
    fmt = str(top.get("format", ""))
    if fmt not in FORMATS:
        raise DiskError(f"{path}: format {fmt or 'unknown'!r}; expected a raw or qcow2 disk image")
    backing = tuple(Path(str(entry["filename"])) for entry in chain[1:])
    return DiskInfo(
        path=path.resolve(),
        format=fmt,
        virtual_size=int(top["virtual-size"]),
        backing_chain=backing,
    )


def file_identity(info: DiskInfo, *, with_sha256: bool = True) -> dict[str, Any]:
    """What proves a later command sees the same disk: sha256, size and mtime of each file.

    The top file is hashed; backing files (large, shared base images) are named by size
    and mtime only.
    """
    stat = info.path.stat()
    identity: dict[str, Any] = {
        "path": str(info.path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "backing": [
            {"path": str(p), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in info.backing_chain
        ],
    }
    if with_sha256:
        identity["sha256"] = sha256_of(info.path)
    return identity


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def make_overlay(info: DiskInfo, overlay: Path, *, size: int | None = None) -> Path:
    """A qcow2 overlay on `info` (which is only ever read), optionally grown to `size` bytes."""
    qemu_img = require("qemu-img", purpose="making a throwaway overlay")["qemu-img"]
    argv = [
        qemu_img,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        info.format,
        "-b",
        str(info.path),
        str(overlay),
    ]
    if size is not None:
        argv.append(str(size))
    run_tool(argv, timeout=60, what="qemu-img create")
    return overlay


def to_raw(info: DiskInfo, destination: Path) -> Path:
    """A raw (sparse) copy of a qcow2 image for debugfs; a raw image is used in place."""
    if info.format == "raw" and not info.backing_chain:
        return info.path
    qemu_img = require("qemu-img", purpose="reading a qcow2 disk")["qemu-img"]
    run_tool(
        [qemu_img, "convert", "-O", "raw", str(info.path), str(destination)],
        timeout=900,
        what="qemu-img convert",
    )
    return destination
