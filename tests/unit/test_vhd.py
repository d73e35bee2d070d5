"""`imageprep vhd`: fixed VHD, size a whole MiB, checked; refused without a boot-test pass."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from agent.boottest import pass_record_path
from agent.disks.image import disk_info, file_identity
from agent.errors import DiskError
from agent.vhd import verify_fixed_vhd
from tests.unit.disk_tools import IMAGEPREP, MIB, imageprep, need


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """A 3.5 MiB raw disk (not a whole MiB) with data in it."""
    need("qemu-img")
    path = tmp_path / "golden.raw"
    path.write_bytes(os.urandom(3 * MIB + MIB // 2))
    return path


def _record_pass(disk: Path) -> None:
    record = {"run_dir": "/runs/x", "disk": file_identity(disk_info(disk))}
    pass_record_path(disk).write_text(json.dumps(record))


def _footer(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(-512, os.SEEK_END)
        return handle.read()


def test_refused_without_boot_test_pass(disk: Path, tmp_path: Path) -> None:
    """No DISK.boot-test.json: exit 3, one line, nothing written."""
    proc = imageprep("vhd", str(disk), str(tmp_path / "out.vhd"))
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        f"imageprep: refused: {disk} has not passed boot-test (no golden.raw.boot-test.json); "
        f"run `imageprep boot-test {disk}` first, or give --force"
    ]
    assert not (tmp_path / "out.vhd").exists()


def test_force_converts_and_rounds_up_to_a_mib(disk: Path, tmp_path: Path) -> None:
    """--force converts; 3.5 MiB becomes a 4 MiB fixed VHD (data + 512-byte footer)."""
    out = tmp_path / "out.vhd"
    proc = imageprep("vhd", str(disk), str(out), "--force")
    assert proc.returncode == 0, proc.stderr
    assert "4 MiB, rounded up by 524288 bytes" in proc.stdout
    assert out.stat().st_size == 4 * MIB + 512
    footer = _footer(out)
    assert footer[:8] == b"conectix"
    assert int.from_bytes(footer[60:64], "big") == 2  # fixed
    assert out.read_bytes()[: 3 * MIB + MIB // 2] == disk.read_bytes()  # DISK unchanged, copied


def test_converts_after_a_recorded_pass(disk: Path, tmp_path: Path) -> None:
    """A pass record that still matches the disk lets it through without --force."""
    _record_pass(disk)
    proc = imageprep("vhd", str(disk), str(tmp_path / "out.vhd"))
    assert proc.returncode == 0, proc.stderr
    assert "boot-test passed" in proc.stdout


def test_refused_when_disk_changed_after_the_pass(disk: Path, tmp_path: Path) -> None:
    """A disk modified after its pass (same size and mtime, other bytes) is refused."""
    _record_pass(disk)
    stat = disk.stat()
    with disk.open("r+b") as handle:
        handle.write(b"changed")
    os.utime(disk, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    proc = imageprep("vhd", str(disk), str(tmp_path / "out.vhd"))
    assert proc.returncode == 3
    assert "changed since it passed boot-test (sha256 differs" in proc.stderr


def test_qcow2_source(disk: Path, tmp_path: Path) -> None:
    """A qcow2 disk converts the same way."""
    qcow2 = tmp_path / "golden.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", disk, qcow2], check=True)
    proc = imageprep("vhd", str(qcow2), str(tmp_path / "out.vhd"), "--force")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.vhd").stat().st_size == 4 * MIB + 512


def test_existing_output_needs_overwrite(disk: Path, tmp_path: Path) -> None:
    """An existing OUT is not replaced without --overwrite (exit 2)."""
    out = tmp_path / "out.vhd"
    out.write_text("keep")
    proc = imageprep("vhd", str(disk), str(out), "--force")
    assert proc.returncode == 2
    assert out.read_text() == "keep"


def test_check_rejects_a_dynamic_vhd(disk: Path, tmp_path: Path) -> None:
    """The result check refuses a dynamic VHD (qemu-img's default subformat)."""
    dynamic = tmp_path / "dynamic.vhd"
    subprocess.run(
        ["qemu-img", "convert", "-O", "vpc", "-o", "force_size=on", disk, dynamic], check=True
    )
    with pytest.raises(DiskError, match="not 2 \\(fixed\\)"):
        verify_fixed_vhd(dynamic, 3 * MIB + MIB // 2)


def _refused_as_source(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "never replaces the source" in lines[0]
    return lines[0]


def test_out_that_is_disk_is_refused(tmp_path: Path) -> None:
    """`vhd --force --overwrite d.vhd ./d.vhd` is exit 2 and leaves the disk as it was."""
    need("qemu-img")
    disk = tmp_path / "d.vhd"  # a raw disk that happens to be named .vhd
    data = os.urandom(2 * MIB)
    disk.write_bytes(data)
    proc = subprocess.run(
        [IMAGEPREP, "vhd", "--force", "--overwrite", "d.vhd", "./d.vhd"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "DISK itself" in _refused_as_source(proc)
    assert disk.read_bytes() == data


def test_out_that_is_a_hard_link_to_disk_is_refused(disk: Path, tmp_path: Path) -> None:
    """OUT naming the same file as DISK through a hard link is refused."""
    link = tmp_path / "same.vhd"
    os.link(disk, link)
    before = disk.read_bytes()
    _refused_as_source(imageprep("vhd", str(disk), str(link), "--force", "--overwrite"))
    assert disk.read_bytes() == before


def test_out_that_is_a_backing_file_is_refused(tmp_path: Path) -> None:
    """OUT resolving to a file of DISK's backing chain is refused, naming that file."""
    need("qemu-img")
    base = tmp_path / "base.vhd"  # raw bytes, named like an output
    base.write_bytes(os.urandom(2 * MIB))
    top = tmp_path / "sub" / "top.qcow2"
    top.parent.mkdir()
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "../base.vhd", "-F", "raw", top],
        check=True,
    )
    before = base.read_bytes()
    line = _refused_as_source(
        imageprep(
            "vhd", str(top), str(tmp_path / "sub" / ".." / "base.vhd"), "--force", "--overwrite"
        )
    )
    assert "a backing file of" in line
    assert base.read_bytes() == before
