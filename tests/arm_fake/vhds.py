"""Fixed VHDs for the upload tests and bench: made by qemu-img, as `imageprep vhd` makes them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from agent.disks.image import disk_info
from agent.vhd import VhdResult, write_vhd_record


def fixed_vhd(path: Path, size: int) -> Path:
    """An all-zero fixed VHD whose virtual size is ``size`` bytes."""
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "vpc",
            "-o",
            "subformat=fixed,force_size=on",
            str(path),
            str(size),
        ],
        check=True,
    )
    return path


def record_passed(vhd: Path, size: int, source: Path) -> None:
    """The OUT.vhd.boot-test.json `upload` wants: ``source`` (a stub disk) passed."""
    source.write_bytes(b"\0" * 512)
    write_vhd_record(VhdResult(vhd, size, disk_info(source), 0, "passed"))
