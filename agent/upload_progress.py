"""``OUT.vhd.upload.json``: which ranges of an upload are known to be on the disk.

A re-run of ``imageprep upload`` after the controller died (no revoke: the disk is still
``ActiveUpload``) sends only the ranges this record does not hold. A range goes in only
after its Put Page succeeded, and the file is rewritten in batches (every ``every``
ranges or ``interval`` seconds, and once at the end), atomically (a temporary file then
``os.replace``): a kill leaves the previous batch, never a torn file. A range written
but not yet recorded is simply sent again; Put Page of the same bytes is idempotent.

The record names the disk by its id *and* its ``uniqueId``, and the VHD by its SHA-256
and size: a disk deleted and made again under the same name, or a changed VHD, does not
match, and everything is sent. The write SAS is never in it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import DiskError

SUFFIX = ".upload.json"
_VERSION = 1


def progress_path(vhd: Path) -> Path:
    """Where the record of ``vhd``'s upload lives: beside it."""
    return vhd.with_name(vhd.name + SUFFIX)


@dataclass(frozen=True)
class UploadIdentity:
    """What a record must match to be trusted: this disk, this VHD."""

    disk_id: str
    disk_unique_id: str
    vhd_sha256: str
    vhd_size: int


def load_done(path: Path, identity: UploadIdentity) -> frozenset[tuple[int, int]]:
    """The (offset, length) ranges ``path`` records for ``identity``; empty if it is absent,
    unreadable or about another disk or VHD."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        same = (
            record.get("version") == _VERSION
            and str(record["disk_id"]).lower() == identity.disk_id.lower()
            and record["disk_unique_id"] == identity.disk_unique_id
            and record["vhd"] == {"sha256": identity.vhd_sha256, "size": identity.vhd_size}
        )
        return frozenset((int(o), int(n)) for o, n in record["done"]) if same else frozenset()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return frozenset()


class ProgressRecord:
    """Collects ranges as their Put Page succeeds and writes them out in batches."""

    def __init__(
        self,
        path: Path,
        identity: UploadIdentity,
        done: frozenset[tuple[int, int]] = frozenset(),
        *,
        every: int = 64,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._identity = identity
        self._done = set(done)
        self._every = every
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = 0
        self._written_at = clock()

    def mark(self, offset: int, length: int) -> None:
        """``offset``/``length`` is on the disk; the file is rewritten if a batch is full."""
        with self._lock:
            self._done.add((offset, length))
            self._pending += 1
            if self._pending >= self._every or self._clock() - self._written_at >= self._interval:
                self._write()

    def flush(self) -> None:
        """Write what has been marked since the last write (and the empty record at start)."""
        with self._lock:
            self._write()

    def remove(self) -> None:
        """The upload is complete and tagged so: the record has nothing left to say."""
        with self._lock:
            self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        identity = self._identity
        record = {
            "version": _VERSION,
            "disk_id": identity.disk_id,
            "disk_unique_id": identity.disk_unique_id,
            "vhd": {"sha256": identity.vhd_sha256, "size": identity.vhd_size},
            "done": sorted(self._done),
        }
        partial = self.path.with_name(f".{self.path.name}.partial")
        try:
            partial.write_text(json.dumps(record, separators=(",", ":")) + "\n", encoding="utf-8")
            os.replace(partial, self.path)
        except OSError as exc:
            raise DiskError(
                f"{self.path}: cannot write the upload record: {exc.strerror}"
            ) from None
        self._pending = 0
        self._written_at = self._clock()
