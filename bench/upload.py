"""Benchmark: imageprep upload to the local fake of ARM, zero ranges skipped.

    .venv/bin/python -m bench.upload [--size-mib 2048] [--data-percent 20] [--delay 0.02]
                                     [--resume-at 50]

A fixed VHD of SIZE MiB is made with qemu-img; DATA-PERCENT of its 4 MiB ranges (spread
evenly) get random bytes, the rest stay zeros. It is uploaded with the real SDK clients
(azure-mgmt-compute, azure-storage-blob) to tests/arm_fake over HTTPS on 127.0.0.1, each
Put Page taking DELAY seconds at the server so that concurrency shows. Printed: bytes
sent against the file size and against the non-zero ranges, the most Put Page requests
the server saw at once, and the throughput (a local figure, not Azure's).

Then a resumed upload: the same VHD to a second disk from a child process that is killed
(SIGKILL, no revoke) once RESUME-AT percent of its ranges (at least one, never all) are
recorded in
OUT.vhd.upload.json, and the same upload run again: printed, the bytes the re-run sent
against a full upload's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.disks.image import MIB, sha256_of
from agent.platforms.azure_disk import AzureDiskUploader, DiskShape
from agent.upload import data_ranges, parse_disk_target
from agent.upload_progress import progress_path
from tests.arm_fake import FakeArm, FakeTokenCredential
from tests.arm_fake.vhds import fixed_vhd
from tests.winrm_server.certs import make_tls_files

SUB = "00000000-0000-4000-8000-00000000abcd"
DISK = f"/subscriptions/{SUB}/resourceGroups/bench-rg/providers/Microsoft.Compute/disks/bench"
RESUMED = DISK + "-resumed"
# The killed child records each range (the tool's default batch is 64), so that the kill
# lands at a known point; batching itself is tested in tests/unit/test_upload_resume.py.
RECORD_EVERY = 1


def make_vhd(path: Path, size_mib: int, percent: int) -> int:
    """The VHD, with ``percent`` of its 4 MiB ranges filled; the non-zero bytes written."""
    fixed_vhd(path, size_mib * MIB)
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


def _uploader(endpoint: str, ca: str, record_every: int = 64) -> AzureDiskUploader:
    return AzureDiskUploader(
        credential=FakeTokenCredential(),
        endpoint=endpoint,
        connection_verify=ca,
        polling_interval=0.01,
        record_every=record_every,
    )


def _upload(uploader: AzureDiskUploader, disk: str, vhd: Path) -> tuple[int, int]:
    """Upload ``vhd`` to ``disk``: (bytes sent, bytes recorded as written before)."""
    target = parse_disk_target(
        f"azure-disk:{disk}", location="westeurope", sku="Standard_LRS", zone=None
    )
    size = vhd.stat().st_size
    record = uploader.upload(target, vhd, size, data_ranges(vhd, size), DiskShape())
    return record.bytes_sent, record.bytes_already_written


def child(endpoint: str, ca: str, vhd: str) -> None:
    """The upload the parent kills: to the second disk, recording every few ranges."""
    _upload(_uploader(endpoint, ca, RECORD_EVERY), RESUMED, Path(vhd))


def resumed(arm: FakeArm, ca: str, vhd: Path, percent: int) -> None:
    """Kill an upload at ``percent`` of its ranges, run it again; print what each sent."""
    ranges = len(data_ranges(vhd, vhd.stat().st_size))
    hold = max(1, min(ranges - 1, ranges * percent // 100))
    arm.hold_pages_after = len(arm.page_requests) + hold
    argv = [sys.executable, "-m", "bench.upload", "--child", arm.endpoint, ca, str(vhd)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    done: list[object] = []
    while len(done) < hold:
        if process.poll() is not None:
            raise SystemExit(f"the upload to kill ended first (exit {process.returncode})")
        time.sleep(0.05)
        try:
            done = json.loads(progress_path(vhd).read_text())["done"]
        except (OSError, ValueError):
            done = []
    process.send_signal(signal.SIGKILL)
    process.wait()
    arm.hold_pages_after = None
    arm.pages_released.set()
    before = sum(length for disk, _, length in arm.page_requests if disk == RESUMED.lower())
    sent, already = _upload(_uploader(arm.endpoint, ca), RESUMED, vhd)
    full = sum(length for _, length in data_ranges(vhd, vhd.stat().st_size))
    print(
        f"resume after SIGKILL at {len(done)} of {ranges} ranges recorded: the first run's "
        f"Put Page {before} bytes; the re-run sent {sent} bytes ({sent / full:.1%} of a full "
        f"upload's {full}), skipping {already} recorded as written"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--data-percent", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--resume-at", type=int, default=50, metavar="PERCENT")
    parser.add_argument("--child", nargs=3, metavar=("ENDPOINT", "CA", "VHD"), help="internal")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
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
            uploader = _uploader(arm.endpoint, str(tls.ca_cert))
            target = parse_disk_target(
                f"azure-disk:{DISK}", location="westeurope", sku="Standard_LRS", zone=None
            )
            sha = sha256_of(vhd)  # once, outside the timing (upload hashes it otherwise)
            started = time.monotonic()
            ranges = data_ranges(vhd, size)
            scanned = time.monotonic() - started
            record = uploader.upload(target, vhd, size, ranges, DiskShape(), sha256=sha)
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
            if args.resume_at:
                arm.page_delay = 0.0
                resumed(arm, str(tls.ca_cert), vhd, args.resume_at)


if __name__ == "__main__":
    main()
