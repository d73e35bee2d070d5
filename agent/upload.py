"""`imageprep upload OUT.vhd --to azure-disk:DISK_ID`: what may be uploaded, and which bytes.

Azure's direct upload takes a fixed VHD whose virtual size is a whole MiB, written to a
managed disk created with ``createOption=Upload`` and exactly the file's size. This module
decides, without contacting anything, whether a file qualifies (the footer, the size, and
the ``OUT.vhd.boot-test.json`` record `imageprep vhd` wrote) and which 4 MiB ranges hold
data: ranges that are all zeros are not sent, since a new upload disk reads as zeros.

A re-run of the same command resumes: agent.platforms.azure_disk reads the disk's tags
and the record ``OUT.vhd.upload.json`` (agent.upload_progress) and sends only what is
missing, or nothing if the disk is tagged complete.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.boottest import pass_record_path
from agent.disks.image import MIB, sha256_of
from agent.errors import DiskError, UsageError

if TYPE_CHECKING:
    from agent.platforms.azure_disk import AzureDiskUploader

_FOOTER = 512
_FIXED = 2
# Azure's Put Page takes at most 4 MiB per request, aligned to 512 bytes.
RANGE = 4 * MIB
_DISK = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Compute/disks/(?P<name>[^/?]+)",
    re.IGNORECASE,
)
_SKUS = ("Standard_LRS", "StandardSSD_LRS", "Premium_LRS", "StandardSSD_ZRS", "Premium_ZRS")


class NotUploadable(Exception):
    """The VHD may not be uploaded as it is (no boot-test record, or changed); --force."""


@dataclass(frozen=True)
class DiskTarget:
    subscription: str
    resource_group: str
    name: str
    location: str
    sku: str = "Standard_LRS"
    zone: str | None = None

    @property
    def disk_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/disks/{self.name}"
        )


def parse_disk_target(spec: str, *, location: str, sku: str, zone: str | None) -> DiskTarget:
    """``azure-disk:/subscriptions/…/disks/NAME`` -> a target, or UsageError."""
    scheme, _, rest = spec.partition(":")
    path, _, query = rest.partition("?")
    match = _DISK.fullmatch(path.rstrip("/")) if scheme == "azure-disk" else None
    if match is None or query:
        raise UsageError(
            f"--to {spec!r}: expected azure-disk:/subscriptions/SUB/resourceGroups/RG/"
            "providers/Microsoft.Compute/disks/NAME"
        )
    if sku not in _SKUS:
        raise UsageError(f"--sku {sku!r}: not one of {', '.join(_SKUS)}")
    if not re.fullmatch(r"[A-Za-z0-9]+", location):
        raise UsageError(f"--location {location!r}: expected a region name such as westeurope")
    if zone is not None and zone not in ("1", "2", "3"):
        raise UsageError(f"--zone {zone!r}: expected 1, 2 or 3")
    return DiskTarget(match["sub"], match["rg"], match["name"], location, sku, zone)


@dataclass(frozen=True)
class UploadSource:
    """A fixed VHD that may be uploaded: its file size (the upload size) and record."""

    path: Path
    size: int  # bytes, footer included: the disk's uploadSizeBytes
    virtual_size: int
    boot_test: str  # the source's verdict, or "skipped (--force)"
    sha256: str  # of the whole file: tagged on the disk, checked against the record


def check_vhd(path: Path, *, force: bool) -> UploadSource:
    """The VHD as Azure's upload needs it; DiskError, or NotUploadable without --force."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            handle.seek(max(0, size - _FOOTER))
            footer = handle.read(_FOOTER)
    except OSError as exc:
        raise DiskError(f"{path}: cannot read: {exc.strerror}") from exc
    problems = []
    if len(footer) < _FOOTER or footer[:8] != b"conectix":
        raise DiskError(f"{path}: not a VHD (no 'conectix' footer); make one with imageprep vhd")
    current = struct.unpack_from(">Q", footer, 48)[0]
    disk_type = struct.unpack_from(">I", footer, 60)[0]
    if disk_type != _FIXED:
        problems.append(f"disk type {disk_type}, not 2 (fixed); Azure takes fixed VHDs only")
    if current % MIB:
        problems.append(f"virtual size {current} is not a whole MiB")
    if size != current + _FOOTER:
        problems.append(f"file size {size} is not the virtual size {current} + 512")
    if problems:
        raise DiskError(f"{path}: cannot be uploaded: {'; '.join(problems)}")
    sha = sha256_of(path)
    verdict = "skipped (--force)" if force else _check_record(path, size, sha)
    return UploadSource(path, size, current, verdict, sha)


def _check_record(path: Path, size: int, sha: str) -> str:
    record_path = pass_record_path(path)
    try:
        record = json.loads(record_path.read_text())
        vhd, source = record["vhd"], record["source"]
    except FileNotFoundError:
        raise NotUploadable(
            f"{path} has no {record_path.name}: make it with `imageprep vhd` from a disk that "
            "passed `imageprep boot-test`, or give --force"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NotUploadable(
            f"{record_path}: unreadable record ({exc!r}); or give --force"
        ) from None
    if source.get("boot_test") != "passed":
        raise NotUploadable(
            f"{path} was made from a disk that did not pass boot-test "
            f"({source.get('boot_test')}); boot-test it, or give --force"
        )
    if vhd.get("size") != size or vhd.get("sha256") != sha:
        raise NotUploadable(
            f"{path} changed since `imageprep vhd` wrote it (size or sha256 differs from "
            f"{record_path.name}); or give --force"
        )
    return "passed"


def data_ranges(path: Path, size: int, *, chunk: int = RANGE) -> list[tuple[int, int]]:
    """(offset, length) of each ``chunk`` of the disk that holds a non-zero byte, then the footer.

    The disk part is read in ``chunk``-sized pieces (512-aligned, as Put Page requires);
    the 512-byte footer is its own range, so a disk whose last MiB is empty costs 512
    bytes there, not a whole chunk.
    """
    data_end = size - _FOOTER
    ranges: list[tuple[int, int]] = []
    with path.open("rb") as handle:
        offset = 0
        while offset < data_end:
            data = os.pread(handle.fileno(), min(chunk, data_end - offset), offset)
            if not data:
                raise DiskError(f"{path}: shorter than its footer says ({offset} bytes)")
            if data.count(0) != len(data):
                ranges.append((offset, len(data)))
            offset += len(data)
    ranges.append((data_end, _FOOTER))
    return ranges


def upload_vhd(
    path: Path,
    target: DiskTarget,
    *,
    force: bool,
    os_type: str,
    hyper_v_generation: str,
    architecture: str,
    security_type: str,
    replace: bool = False,
    uploader: AzureDiskUploader | None = None,
    on_progress: Callable[[int, int], None] = lambda sent, total: None,
) -> dict[str, object]:
    """Check the VHD, then create (resume, or with ``replace`` delete and create) the disk
    and upload its non-zero ranges; the summary.

    Raises NotUploadable (exit 3), DiskError/UsageError (2) or PlatformError (12).
    """
    from agent.platforms.azure_disk import AzureDiskUploader, DiskShape

    source = check_vhd(path, force=force)
    ranges = data_ranges(path, source.size)
    shape = DiskShape(os_type, hyper_v_generation, architecture, security_type)
    record = (uploader or AzureDiskUploader()).upload(
        target,
        path,
        source.size,
        ranges,
        shape,
        on_progress,
        sha256=source.sha256,
        replace=replace,
    )
    data = sum(length for _, length in ranges)
    return {
        "disk_id": record.disk_id,
        "size": record.size,
        "bytes_sent": record.bytes_sent,
        "ranges_sent": record.ranges_sent,
        "skipped_zero_bytes": record.size - data,
        "resumed": record.resumed,
        "bytes_already_written": record.bytes_already_written,
        "ranges_already_written": record.ranges_already_written,
        "already_uploaded": record.already_uploaded,
        "replaced": record.replaced,
        "disk_state": record.disk_state,
        "boot_test": source.boot_test,
        "vhd_sha256": source.sha256,
        "seconds": round(record.seconds, 3),
    }


class ProgressLine:
    """``sent/total MiB, rate MiB/s, ETA s`` for a terminal, at most every ``interval`` s."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        clock: Callable[[], float] | None = None,
        interval: float = 0.5,
    ) -> None:
        self._write = write
        self._clock = clock or time.monotonic
        self._started = self._clock()
        self._shown = float("-inf")
        self._interval = interval

    def __call__(self, sent: int, total: int) -> None:
        now = self._clock()
        if sent < total and now - self._shown < self._interval:
            return
        self._shown = now
        elapsed = max(now - self._started, 1e-9)
        rate = sent / elapsed
        eta = (total - sent) / rate if rate > 0 else float("inf")
        self._write(
            f"\rupload: {sent / MIB:,.1f}/{total / MIB:,.1f} MiB, {rate / MIB:,.1f} MiB/s, "
            f"ETA {eta:,.0f} s" + ("\n" if sent >= total else "")
        )
