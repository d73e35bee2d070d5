"""Small disks for the boot-test and vhd unit tests, made without root (mkfs.ext4 -d)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

IMAGEPREP = str(Path(sys.executable).with_name("imageprep"))
MIB = 1 << 20


def need(*tools: str) -> None:
    """Skip (fail under IMAGEPREP_REQUIRE_TARGETS=1) unless every host tool is installed."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"needs {', '.join(missing)} (tests/targets/host-deps.sh installs them)"
    if os.environ.get("IMAGEPREP_REQUIRE_TARGETS") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def guest_tree(root: Path, *, generalized: bool, kernel: bool = False) -> Path:
    """A tiny root tree: os-release (via the usual symlink), machine-id, passwd, ssh."""
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text('PRETTY_NAME="Tiny Test Linux"\nID=debian\n')
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        + ("" if generalized else "azureuser:x:1000:1000::/home/azureuser:/bin/bash\n")
    )
    (root / "etc/machine-id").write_text("" if generalized else "0123456789abcdef" * 2 + "\n")
    (root / "etc/ssh/sshd_config").write_text("# test\n")
    if not generalized:
        (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA test\n")
        (root / "var/lib/cloud/instances/iid-1").mkdir(parents=True)
        (root / "var/lib/cloud/instance").symlink_to("/var/lib/cloud/instances/iid-1")
    if kernel:
        (root / "boot").mkdir()
        (root / "boot/vmlinuz-6.1.0-9-cloud-amd64").write_bytes(b"kernel")
        (root / "boot/initrd.img-6.1.0-9-cloud-amd64").write_bytes(b"initrd")
    return root


def ext4_disk(path: Path, tree: Path, *, size_mib: int = 8) -> Path:
    """A whole-disk ext4 image of `tree`."""
    subprocess.run(["truncate", "-s", f"{size_mib}M", path], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", tree, path], check=True)
    return path


def partitioned_disk(path: Path, tree: Path) -> Path:
    """An MBR disk with one Linux partition at 1 MiB holding an ext4 image of `tree`."""
    subprocess.run(["truncate", "-s", "12M", path], check=True)
    entry = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, 10 * 2048)
    with path.open("r+b") as disk:
        disk.seek(446)
        disk.write(entry)
        disk.seek(510)
        disk.write(b"\x55\xaa")
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-E", f"offset={MIB}", "-d", tree, path, "10M"], check=True
    )
    return path


def imageprep(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IMAGEPREP, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
        stdin=subprocess.DEVNULL,
    )
