"""Benchmark: imageprep upload to the local fake of ARM, zero ranges skipped.

    .venv/bin/python -m bench.upload [--size-mib 2048] [--data-percent 20] [--delay 0.02]

A fixed VHD of SIZE MiB is made with qemu-img; DATA-PERCENT of its 4 MiB ranges (spread
evenly) get random bytes, the rest stay zeros. It is uploaded with the real SDK clients
(azure-mgmt-compute, azure-storage-blob) to tests/arm_fake over HTTPS on 127.0.0.1, each
Put Page taking DELAY seconds at the server so that concurrency shows. Printed: bytes
sent against the file size and against the non-zero ranges, the most Put Page requests
the server saw at once, and the throughput (a local figure, not Azure's).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from agent.disks.image import MIB
from agent.platforms.azure_disk import AzureDiskUploader, DiskShape
from agent.upload import data_ranges, parse_disk_target
from tests.arm_fake import FakeArm, FakeTokenCredential
from tests.winrm_server.certs import make_tls_files

SUB = "00000000-0000-4000-8000-00000000abcd"
DISK = f"/subscriptions/{SUB}/resourceGroups/bench-rg/providers/Microsoft.Compute/disks/bench"


def make_vhd(path: Path, size_mib: int, percent: int) -> int:
    """The VHD, with ``percent`` of its 4 MiB ranges filled; the non-zero bytes written."""
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
            str(size_mib * MIB),
        ],
        check=True,
    )
    ranges = size_mib // 4
    filled = max(1, ranges * percent // 100)
    step = ranges / filled
    fd = os.open(path, os.O_WRONLY)
    try:
        for i in range(filled):
            os.pwrite(fd, os.urandom(4 * MIB), int(i * step) * 4 * MIB)
    finally:
        os.close(fd)
    return filled * 4 * MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--data-percent", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.02)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imageprep-bench-upload-") as scratch:
        folder = Path(scratch)
        vhd = folder / "bench.vhd"
        non_zero = make_vhd(vhd, args.size_mib, args.data_percent)
        size = vhd.stat().st_size
        (folder / "tls").mkdir()
        tls = make_tls_files(folder / "tls")
        arm = FakeArm(SUB, in_progress_polls=1)
        arm.resource_groups.add("bench-rg")
        arm.keep_pages = False
        arm.page_delay = args.delay
        with arm.serving(tls):
            uploader = AzureDiskUploader(
                credential=FakeTokenCredential(),
                endpoint=arm.endpoint,
                connection_verify=str(tls.ca_cert),
                polling_interval=0.01,
            )
            target = parse_disk_target(
                f"azure-disk:{DISK}", location="westeurope", sku="Standard_LRS", zone=None
            )
            started = time.monotonic()
            ranges = data_ranges(vhd, size)
            scanned = time.monotonic() - started
            record = uploader.upload(target, vhd, size, ranges, DiskShape())
            seconds = time.monotonic() - started
        received = sum(length for _, _, length in arm.page_requests)
        print(f"file {size} bytes, non-zero ranges {non_zero} bytes + footer 512")
        print(
            f"bytes sent {record.bytes_sent} ({record.bytes_sent / size:.1%} of the file), "
            f"received by the fake {received}, in {record.ranges_sent} Put Page requests"
        )
        print(f"equal to the non-zero ranges + footer: {record.bytes_sent == non_zero + 512}")
        print(f"most Put Page requests in flight at once: {arm.max_pages_in_flight}")
        print(
            f"zero scan {scanned:.2f} s; whole upload {seconds:.2f} s, "
            f"{record.bytes_sent / MIB / seconds:.1f} MiB/s sent, "
            f"{size / MIB / seconds:.1f} MiB/s of disk"
        )


if __name__ == "__main__":
    main()
