"""imageprep upload, before anything is contacted: which VHDs qualify, which bytes are sent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from agent.disks.image import MIB, disk_info, sha256_of
from agent.errors import DiskError, UsageError
from agent.upload import NotUploadable, check_vhd, data_ranges, parse_disk_target
from agent.vhd import VhdResult, convert_to_vhd, write_vhd_record

DISK_ID = (
    "/subscriptions/00000000-0000-4000-8000-00000000abcd/resourceGroups/rg/providers/"
    "Microsoft.Compute/disks/golden-os"
)


def _vhd(path: Path, size: int, *, fixed: bool = True) -> Path:
    options = ["-o", "subformat=fixed,force_size=on"] if fixed else ["-o", "force_size=on"]
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "vpc", *options, str(path), str(size)], check=True
    )
    return path


def _passed(vhd: Path, raw: Path) -> None:
    write_vhd_record(VhdResult(vhd, vhd.stat().st_size - 512, disk_info(raw), 0, "passed"))


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """A 16 MiB raw disk with data in its first and third 4 MiB range."""
    path = tmp_path / "disk.raw"
    with path.open("wb") as handle:
        handle.truncate(16 * MIB)
        handle.write(b"boot")
        handle.seek(9 * MIB)
        handle.write(b"data")
    return path


def test_vhd_writes_the_record_upload_checks(raw: Path, tmp_path: Path) -> None:
    """imageprep vhd leaves OUT.vhd.boot-test.json with OUT's size, sha256 and the verdict."""
    out = tmp_path / "out.vhd"
    convert_to_vhd(raw, out, force=True)
    record = json.loads((tmp_path / "out.vhd.boot-test.json").read_text())
    assert record["vhd"]["size"] == out.stat().st_size == 16 * MIB + 512
    assert record["vhd"]["sha256"] == sha256_of(out)
    assert record["source"]["boot_test"] == "skipped (--force)"


def test_a_vhd_made_without_boot_test_is_refused(raw: Path, tmp_path: Path) -> None:
    """A record saying boot-test was skipped: refused unless --force."""
    out = tmp_path / "out.vhd"
    convert_to_vhd(raw, out, force=True)
    with pytest.raises(NotUploadable, match="did not pass boot-test"):
        check_vhd(out, force=False)
    assert check_vhd(out, force=True).boot_test == "skipped (--force)"


def test_a_vhd_without_record_is_refused(tmp_path: Path) -> None:
    """No OUT.vhd.boot-test.json: refused, naming imageprep vhd and --force."""
    vhd = _vhd(tmp_path / "bare.vhd", 8 * MIB)
    with pytest.raises(NotUploadable, match=r"no bare\.vhd\.boot-test\.json.*--force"):
        check_vhd(vhd, force=False)


def test_a_passed_record_lets_it_through_until_the_file_changes(raw: Path, tmp_path: Path) -> None:
    """A passed record for this very file is accepted; one changed byte is refused."""
    vhd = _vhd(tmp_path / "ok.vhd", 8 * MIB)
    _passed(vhd, raw)
    source = check_vhd(vhd, force=False)
    assert (source.size, source.virtual_size, source.boot_test) == (
        8 * MIB + 512,
        8 * MIB,
        "passed",
    )
    with vhd.open("r+b") as handle:
        handle.write(b"x")
    with pytest.raises(NotUploadable, match="changed since"):
        check_vhd(vhd, force=False)


def test_a_dynamic_vhd_is_refused(tmp_path: Path) -> None:
    """Azure takes fixed VHDs only: a dynamic one is a DiskError (exit 2), even with --force."""
    vhd = _vhd(tmp_path / "dyn.vhd", 8 * MIB, fixed=False)
    with pytest.raises(DiskError, match=r"not 2 \(fixed\)"):
        check_vhd(vhd, force=True)


def test_a_size_that_is_not_a_whole_mib_is_refused(tmp_path: Path) -> None:
    """A fixed VHD of 8 MiB + 512 bytes: refused, naming the size."""
    vhd = _vhd(tmp_path / "odd.vhd", 8 * MIB + 512)
    with pytest.raises(DiskError, match="is not a whole MiB"):
        check_vhd(vhd, force=True)


def test_a_file_that_is_not_a_vhd_is_refused(raw: Path) -> None:
    """A raw disk: no VHD footer, pointing at imageprep vhd."""
    with pytest.raises(DiskError, match="imageprep vhd"):
        check_vhd(raw, force=True)


def test_zero_ranges_are_skipped(tmp_path: Path) -> None:
    """Only the 4 MiB ranges holding data, then the footer: 8 MiB + 512 of 16 MiB sent."""
    vhd = _vhd(tmp_path / "sparse.vhd", 16 * MIB)
    fd = os.open(vhd, os.O_WRONLY)
    os.pwrite(fd, b"boot", 0)
    os.pwrite(fd, b"data", 9 * MIB)
    os.close(fd)
    ranges = data_ranges(vhd, vhd.stat().st_size)
    assert ranges == [(0, 4 * MIB), (8 * MIB, 4 * MIB), (16 * MIB, 512)]
    assert sum(length for _, length in ranges) == 8 * MIB + 512


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("azure-disk:/subscriptions/x/disks/d", {}, "expected azure-disk:"),
        (f"disk:{DISK_ID}", {}, "expected azure-disk:"),
        (f"azure-disk:{DISK_ID}", {"sku": "Ultra"}, "--sku 'Ultra'"),
        (f"azure-disk:{DISK_ID}", {"zone": "4"}, "--zone '4'"),
        (f"azure-disk:{DISK_ID}", {"location": "west europe"}, "--location"),
    ],
)
def test_bad_disk_target_is_a_usage_error(spec: str, kwargs: dict[str, str], message: str) -> None:
    """A wrong --to, --sku, --zone or --location fails before anything is contacted."""
    options = {"location": "westeurope", "sku": "Standard_LRS", "zone": None} | kwargs
    with pytest.raises(UsageError, match=message):
        parse_disk_target(spec, **options)  # type: ignore[arg-type]
