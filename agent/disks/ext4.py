"""Read a Linux root filesystem inside a raw disk image with debugfs: no mount, no root.

The root filesystem is either the whole disk (an ext4 image booted with an external kernel)
or one partition of an MBR or GPT disk; partitions are found by reading the tables here and
opened with debugfs's `image?offset=BYTES`. Only ext2/3/4 is readable this way.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from agent.disks.tools import require, run_tool
from agent.errors import DiskError

_SECTOR = 512
_EXT_MAGIC_OFFSET = 1080
_EXT_MAGIC = b"\x53\xef"
_MAX_SYMLINK_HOPS = 20
_NOT_FOUND = "File not found by ext2_lookup"


@dataclass(frozen=True)
class Entry:
    """One directory entry as `debugfs ls -p` lists it."""

    name: str
    mode: int
    size: int

    @property
    def is_dir(self) -> bool:
        return self.mode & 0o170000 == 0o040000

    @property
    def is_symlink(self) -> bool:
        return self.mode & 0o170000 == 0o120000


class Ext4Reader:
    """Read-only access to one ext2/3/4 filesystem at `offset` bytes into `raw`."""

    def __init__(self, raw: Path, offset: int = 0) -> None:
        self.raw = raw
        self.offset = offset
        self._debugfs = require("debugfs", purpose="reading a disk image")["debugfs"]

    @property
    def whole_disk(self) -> bool:
        """True when the filesystem is the whole disk (no partition table)."""
        return self.offset == 0

    def _request(self, request: str) -> tuple[str, str]:
        device = f"{self.raw}?offset={self.offset}" if self.offset else str(self.raw)
        proc = run_tool(
            [self._debugfs, "-R", request, device],
            timeout=120,
            what=f"debugfs {request.split()[0]}",
        )
        return proc.stdout, proc.stderr

    def _bytes_request(self, request: str) -> tuple[bytes, str]:
        device = f"{self.raw}?offset={self.offset}" if self.offset else str(self.raw)
        proc = subprocess.run(
            [self._debugfs, "-R", request, device],
            capture_output=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise DiskError(
                f"debugfs {request} on {self.raw} failed: "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout, proc.stderr.decode(errors="replace")

    def lstat_mode(self, path: str) -> int | None:
        """The mode of `path` itself (symlinks not followed); None if it does not exist."""
        parent, name = str(PurePosixPath(path).parent), PurePosixPath(path).name
        for entry in self.listdir(parent) or []:
            if entry.name == name:
                return entry.mode
        return None

    def exists(self, path: str) -> bool:
        """True if `path` exists (as anything, a dangling symlink included)."""
        return self.lstat_mode(self.resolve(path, follow_last=False)) is not None

    def readlink(self, path: str) -> str:
        out, _ = self._request(f'stat "{path}"')
        for line in out.splitlines():
            if line.startswith("Fast link dest:"):
                return line.split(":", 1)[1].strip().strip('"')
        data, _ = self._bytes_request(f'cat "{path}"')  # a slow symlink keeps it in a block
        return data.decode(errors="replace")

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """`path` with symlinks resolved inside this filesystem (never on the host)."""
        pending = list(PurePosixPath("/", path).parts[1:])
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = "/" + "/".join([*resolved, part])
            mode = self.lstat_mode(candidate) if (pending or follow_last) else None
            if mode is not None and mode & 0o170000 == 0o120000:
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise DiskError(f"too many symlinks resolving {path} in {self.raw}")
                target = PurePosixPath(self.readlink(candidate))
                if target.is_absolute():
                    resolved = []
                pending = list(target.parts[1:] if target.is_absolute() else target.parts) + pending
                continue
            resolved.append(part)
        return "/" + "/".join(resolved)

    def read_bytes(self, path: str) -> bytes | None:
        """The content of file `path` (symlinks followed), or None if it does not exist."""
        real = self.resolve(path)
        data, err = self._bytes_request(f'cat "{real}"')
        if _NOT_FOUND in err:
            return None
        return data

    def read_text(self, path: str) -> str | None:
        data = self.read_bytes(path)
        return None if data is None else data.decode(errors="replace")

    def listdir(self, path: str) -> list[Entry] | None:
        """Entries of directory `path` (without . and ..), or None if it does not exist."""
        out, err = self._request(f'ls -p "{path}"')
        if _NOT_FOUND in err or "is not a directory" in err:
            return None
        entries = []
        for line in out.splitlines():
            # /inode/mode/uid/gid/name/size/
            fields = line.strip().split("/")
            if len(fields) < 7 or fields[5] in (".", ".."):
                continue
            entries.append(
                Entry(
                    name="/".join(fields[5:-2]), mode=int(fields[2], 8), size=int(fields[-2] or 0)
                )
            )
        return entries

    def dump(self, path: str, destination: Path) -> None:
        """Copy file `path` (symlinks followed) out to `destination` on the host."""
        real = self.resolve(path)
        _, err = self._request(f'dump "{real}" "{destination}"')
        if _NOT_FOUND in err or not destination.is_file():
            raise DiskError(f"{path} not found in {self.raw}")


def find_root_filesystem(raw: Path) -> Ext4Reader:
    """The ext2/3/4 filesystem of `raw` that holds /etc/os-release: whole disk or partition."""
    candidates = [0, *_partition_offsets(raw)]
    seen_ext = False
    for offset in candidates:
        if not _has_ext_magic(raw, offset):
            continue
        seen_ext = True
        reader = Ext4Reader(raw, offset)
        if reader.read_bytes("/etc/os-release") is not None:
            return reader
    if seen_ext:
        raise DiskError(f"{raw}: no ext2/3/4 filesystem on it holds /etc/os-release")
    raise DiskError(
        f"{raw}: no ext2/3/4 root filesystem found (whole disk, MBR or GPT partitions); "
        "boot-test reads ext4 root filesystems only"
    )


def _has_ext_magic(raw: Path, offset: int) -> bool:
    with raw.open("rb") as handle:
        handle.seek(offset + _EXT_MAGIC_OFFSET)
        return handle.read(2) == _EXT_MAGIC


def _partition_offsets(raw: Path) -> list[int]:
    """Byte offsets of the partitions an MBR or GPT table lists (empty if neither)."""
    with raw.open("rb") as handle:
        mbr = handle.read(_SECTOR)
        if len(mbr) < _SECTOR or mbr[510:512] != b"\x55\xaa":
            return []
        entries = [mbr[446 + 16 * i : 446 + 16 * (i + 1)] for i in range(4)]
        if any(entry[4] == 0xEE for entry in entries):
            return _gpt_offsets(handle)
        return [
            struct.unpack_from("<I", entry, 8)[0] * _SECTOR
            for entry in entries
            if entry[4] not in (0x00, 0x05, 0x0F)
        ]


def _gpt_offsets(stream: BinaryIO) -> list[int]:
    stream.seek(_SECTOR)
    header = stream.read(92)
    if header[:8] != b"EFI PART":
        return []
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    stream.seek(entries_lba * _SECTOR)
    table = stream.read(min(count, 256) * size)
    offsets = []
    for i in range(min(count, 256)):
        entry = table[i * size : (i + 1) * size]
        if len(entry) < 48 or entry[:16] == b"\0" * 16:
            continue
        offsets.append(struct.unpack_from("<Q", entry, 32)[0] * _SECTOR)
    return offsets
