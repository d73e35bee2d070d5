"""`imageprep vhd DISK OUT.vhd`: a raw or qcow2 disk as the fixed-size VHD Azure accepts.

Azure's "upload your own image" path wants a fixed (not dynamic) VHD whose virtual size is a
whole number of MiB. qemu-img writes it (`-O vpc -o subformat=fixed,force_size=on`; without
force_size it would round the size to a CHS geometry). A size that is not a whole MiB is
rounded up on a throwaway qcow2 overlay, so DISK itself is never written. The result is
checked twice: `qemu-img info` (format vpc, virtual size) and the VHD footer itself (cookie
"conectix", disk type 2 = fixed, current size = the virtual size, file = size + 512 bytes).

By default DISK must have passed `imageprep boot-test`: DISK.boot-test.json must exist and
still describe the same file (sha256, size, mtime; size and mtime of backing files).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.boottest import pass_record_path
from agent.disks.image import MIB, DiskInfo, disk_info, file_identity, make_overlay, sha256_of
from agent.disks.tools import require, run_tool
from agent.errors import DiskError, UsageError

_FOOTER = 512
_FIXED = 2


class NotBootTested(Exception):
    """DISK has no valid boot-test pass; the message says why."""


@dataclass(frozen=True)
class VhdResult:
    path: Path
    virtual_size: int
    source: DiskInfo
    rounded_up_by: int
    boot_test: str  # "passed", or "skipped (--force)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "vhd": str(self.path),
            "virtual_size": self.virtual_size,
            "virtual_size_mib": self.virtual_size // MIB,
            "subformat": "fixed",
            "source": self.source.to_dict(),
            "rounded_up_by": self.rounded_up_by,
            "boot_test": self.boot_test,
        }


def check_boot_test_pass(info: DiskInfo) -> str:
    """The pass record's run folder; NotBootTested if absent or for another file content."""
    record_path = pass_record_path(info.path)
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError as exc:
        raise NotBootTested(
            f"{info.path} has not passed boot-test (no {record_path.name}); "
            f"run `imageprep boot-test {info.path}` first, or give --force"
        ) from exc
    except (OSError, ValueError) as exc:
        raise NotBootTested(f"{record_path}: unreadable pass record ({exc})") from exc
    recorded = record.get("disk", {})
    current = file_identity(info, with_sha256=False)
    for key in ("size", "mtime_ns", "backing"):
        if recorded.get(key) != current[key]:
            raise NotBootTested(
                f"{info.path} changed since it passed boot-test ({key} differs from "
                f"{record_path.name}); boot-test it again, or give --force"
            )
    if recorded.get("sha256") != file_identity(info)["sha256"]:
        raise NotBootTested(
            f"{info.path} changed since it passed boot-test (sha256 differs from "
            f"{record_path.name}); boot-test it again, or give --force"
        )
    return str(record.get("run_dir", ""))


def convert_to_vhd(
    disk: Path, out: Path, *, force: bool = False, overwrite: bool = False
) -> VhdResult:
    """Write `out` as a fixed VHD of `disk`, size rounded up to a MiB; check it; return it.

    Raises NotBootTested (without --force), UsageError, DiskError, HostToolMissing.
    """
    if out.suffix.lower() != ".vhd":
        raise UsageError(f"{out}: the output must end in .vhd")
    info = disk_info(disk)
    refuse_overwriting_source(info, out)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists; give --overwrite to replace it")
    boot_test = "skipped (--force)"
    if not force:
        check_boot_test_pass(info)
        boot_test = "passed"
    qemu_img = require("qemu-img", purpose="vhd")["qemu-img"]
    size = -(-info.virtual_size // MIB) * MIB
    partial = out.with_name(f".{out.name}.partial")
    with tempfile.TemporaryDirectory(prefix="imageprep-vhd-", dir=out.parent) as scratch:
        source = info.path
        if size != info.virtual_size:
            source = make_overlay(info, Path(scratch) / "grown.qcow2", size=size)
        run_tool(
            [
                qemu_img,
                "convert",
                "-O",
                "vpc",
                "-o",
                "subformat=fixed,force_size=on",
                str(source),
                str(partial),
            ],
            timeout=3600,
            what="qemu-img convert -O vpc",
        )
    try:
        verify_fixed_vhd(partial, size)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    result = VhdResult(out, size, info, size - info.virtual_size, boot_test)
    write_vhd_record(result)
    return result


def write_vhd_record(result: VhdResult) -> Path:
    """OUT.vhd.boot-test.json: the source's boot-test verdict and OUT's own size and sha256.

    `imageprep upload` checks it, so that what goes to Azure is the file that was made
    from a disk that booted, unchanged since.
    """
    record = pass_record_path(result.path)
    data = {
        "vhd": {
            "path": str(result.path),
            "size": result.path.stat().st_size,
            "sha256": sha256_of(result.path),
            "virtual_size": result.virtual_size,
        },
        "source": {"disk": str(result.source.path), "boot_test": result.boot_test},
    }
    tmp = record.with_name(f".{record.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, record)
    return record


def _same_file(a: Path, b: Path) -> bool:
    """One file under two names: the same resolved path, or a hard link (same inode)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # OUT does not exist yet
        return False


def refuse_overwriting_source(info: DiskInfo, out: Path) -> None:
    """UsageError if OUT is DISK or a file of its backing chain, under any name.

    Replacing either would destroy the very disk being converted (--overwrite is for an
    old VHD, not for the source).
    """
    for source in (info.path, *info.backing_chain):
        if _same_file(out, source):
            what = "DISK itself" if source == info.path else f"a backing file of {info.path}"
            raise UsageError(
                f"{out} is {what} ({source}): write the VHD to another file, "
                "--overwrite never replaces the source"
            )


def verify_fixed_vhd(path: Path, expected_size: int) -> None:
    """DiskError unless `path` is a fixed VHD of exactly `expected_size` (a whole MiB)."""
    qemu_img = require("qemu-img", purpose="vhd")["qemu-img"]
    info = json.loads(
        run_tool(
            [qemu_img, "info", "--output=json", "-f", "vpc", str(path)],
            timeout=60,
            what="qemu-img info",
        ).stdout
    )
    problems = []
    if info.get("format") != "vpc":
        problems.append(f"format {info.get('format')!r}, not vpc")
    virtual = int(info.get("virtual-size", -1))
    if virtual != expected_size or virtual % MIB:
        problems.append(f"virtual size {virtual}, expected {expected_size} (a whole MiB)")
    with path.open("rb") as handle:
        handle.seek(-_FOOTER, os.SEEK_END)
        footer = handle.read(_FOOTER)
    current_size = struct.unpack_from(">Q", footer, 48)[0]
    disk_type = struct.unpack_from(">I", footer, 60)[0]
    if footer[:8] != b"conectix":
        problems.append("no VHD footer (cookie 'conectix')")
    if disk_type != _FIXED:
        problems.append(f"disk type {disk_type}, not 2 (fixed)")
    if current_size != expected_size:
        problems.append(f"footer size {current_size}, expected {expected_size}")
    if path.stat().st_size != expected_size + _FOOTER:
        problems.append(f"file size {path.stat().st_size}, expected {expected_size + _FOOTER}")
    if problems:
        raise DiskError(f"{path} is not a valid fixed VHD: {'; '.join(problems)}")
