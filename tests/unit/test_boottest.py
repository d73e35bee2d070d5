"""boot-test without booting: console parsing, seed, offline disk reading, refusals, verdicts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agent.boottest import console_host_keys, fingerprint
from agent.disks.ext4 import Ext4Reader, find_root_filesystem
from agent.disks.image import disk_info
from agent.disks.seed import make_seed, new_key_pair
from agent.errors import DiskError
from tests.unit.disk_tools import ext4_disk, guest_tree, imageprep, need, partitioned_disk

ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHjNXwQ0OtZAP1VNAmoU2rDwRnp5gPYgMsyChtDDz1dA"
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"


def test_console_keys_from_the_last_complete_block() -> None:
    """Keys come from the last BEGIN/END block, with CR and journal prefixes ignored."""
    console = (
        "-----BEGIN SSH HOST KEY KEYS-----\r\nssh-ed25519 AAAAold root@old\r\n"
        "-----END SSH HOST KEY KEYS-----\r\n"
        "[  36.1] cloud-init[362]: -----BEGIN SSH HOST KEY KEYS-----\r\n"
        f"[  36.1] cloud-init[362]: {ED} root@new\r\n"
        f"{RSA} root@new\r\n"
        "-----END SSH HOST KEY KEYS-----\r\n"
    )
    assert console_host_keys(console) == [ED, RSA]


def test_console_keys_empty_until_the_block_ends() -> None:
    """A block without its END marker yields nothing yet."""
    assert console_host_keys(f"-----BEGIN SSH HOST KEY KEYS-----\n{ED}\n") == []


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    """fingerprint() gives OpenSSH's SHA256 fingerprint."""
    need("ssh-keygen")
    public = new_key_pair(tmp_path / "key")
    (tmp_path / "key.pub").write_text(public + "\n")
    listed = subprocess.run(
        ["ssh-keygen", "-lf", tmp_path / "key.pub"], capture_output=True, text=True, check=True
    ).stdout
    assert listed.split()[1] == fingerprint(public)


def test_new_key_is_private_to_its_owner(tmp_path: Path) -> None:
    """The throwaway private key is written 0600."""
    new_key_pair(tmp_path / "key")
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600


def test_seed_is_a_cidata_vfat_with_the_new_user(tmp_path: Path) -> None:
    """The seed is vfat labelled CIDATA; user-data creates the new user with the new key."""
    need("mkfs.vfat", "mcopy", "mtype", "mlabel")
    seed = make_seed(tmp_path)
    user_data = subprocess.run(
        ["mtype", "-i", seed.image, "::user-data"], capture_output=True, text=True, check=True
    ).stdout
    meta_data = subprocess.run(
        ["mtype", "-i", seed.image, "::meta-data"], capture_output=True, text=True, check=True
    ).stdout
    label = subprocess.run(
        ["mlabel", "-s", "-i", seed.image, "::"], capture_output=True, text=True, check=True
    ).stdout
    assert f"name: {seed.user}" in user_data
    assert seed.public_key in user_data
    assert "- default" not in user_data
    assert f"instance-id: {seed.instance_id}" in meta_data
    assert "CIDATA" in label


def test_reader_follows_symlinks_inside_the_image(tmp_path: Path) -> None:
    """/etc/os-release -> ../usr/lib/os-release is resolved inside the image."""
    need("mkfs.ext4", "debugfs")
    disk = ext4_disk(tmp_path / "d.raw", guest_tree(tmp_path / "t", generalized=True))
    fs = Ext4Reader(disk)
    assert "Tiny Test Linux" in (fs.read_text("/etc/os-release") or "")
    assert fs.read_text("/etc/machine-id") == ""
    assert fs.read_text("/etc/nothing") is None
    assert [e.name for e in fs.listdir("/etc/ssh") or []] == ["sshd_config"]


def test_root_filesystem_found_in_a_partition(tmp_path: Path) -> None:
    """On an MBR disk the root filesystem is found in its partition."""
    need("mkfs.ext4", "debugfs")
    disk = partitioned_disk(tmp_path / "p.raw", guest_tree(tmp_path / "t", generalized=True))
    fs = find_root_filesystem(disk)
    assert (fs.offset, fs.whole_disk) == (1 << 20, False)


def test_no_ext4_is_a_disk_error(tmp_path: Path) -> None:
    """A file without an ext2/3/4 root filesystem is refused with a DiskError."""
    junk = tmp_path / "junk.raw"
    junk.write_bytes(b"\0" * 65536)
    with pytest.raises(DiskError, match="no ext2/3/4 root filesystem"):
        find_root_filesystem(junk)


def test_disk_not_generalized_is_refused_without_booting(tmp_path: Path) -> None:
    """A disk with machine-id, host keys, cloud-init instance and the user: exit 3, not booted."""
    need("mkfs.ext4", "debugfs", "qemu-img")
    disk = ext4_disk(tmp_path / "d.raw", guest_tree(tmp_path / "t", generalized=False))
    proc = imageprep(
        "boot-test",
        str(disk),
        "--deprovisioned-user",
        "azureuser",
        "--run-dir",
        str(tmp_path / "run"),
        "--log-format",
        "json",
    )
    assert proc.returncode == 3, proc.stderr
    report = json.loads((tmp_path / "run" / "result.json").read_text())
    assert report["exit_reason"] == "preflight_failed"
    assert report["message"] == (
        f"{disk} is not generalized: /etc/machine-id is set ({'0123456789abcdef' * 2}), "
        "1 SSH host key files in /etc/ssh, cloud-init instance state in /var/lib/cloud/instance, "
        "user azureuser still in /etc/passwd; not booted"
    )
    assert report["boot"] is None


def test_missing_qemu_is_exit_10_naming_the_package(tmp_path: Path) -> None:
    """Without qemu-system-x86_64 on PATH: exit 10 and the Debian package to install."""
    need("mkfs.ext4", "debugfs", "qemu-img")
    disk = ext4_disk(tmp_path / "d.raw", guest_tree(tmp_path / "t", generalized=True))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("qemu-img", "debugfs"):
        os.symlink(shutil.which(tool) or tool, bin_dir / tool)
    proc = imageprep(
        "boot-test",
        str(disk),
        "--run-dir",
        str(tmp_path / "run"),
        "--log-format",
        "json",
        env={"PATH": str(bin_dir)},
    )
    assert proc.returncode == 10, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "qemu-system-x86_64" in summary["message"]
    assert "apt-get install" in summary["message"]


def test_whole_disk_without_kernel_is_refused(tmp_path: Path) -> None:
    """A bare ext4 disk without /boot/vmlinuz-* cannot be booted: exit 2, one line."""
    need("mkfs.ext4", "debugfs", "qemu-img", "qemu-system-x86_64", "mkfs.vfat", "mcopy")
    disk = ext4_disk(tmp_path / "d.raw", guest_tree(tmp_path / "t", generalized=True))
    proc = imageprep(
        "boot-test", str(disk), "--run-dir", str(tmp_path / "run"), "--log-format", "json"
    )
    assert proc.returncode == 2, proc.stderr
    assert "no /boot/vmlinuz-*" in json.loads(proc.stdout.splitlines()[-1])["message"]


def test_missing_disk_is_a_usage_error(tmp_path: Path) -> None:
    """A DISK that does not exist: exit 2."""
    proc = imageprep(
        "boot-test",
        str(tmp_path / "nope.raw"),
        "--run-dir",
        str(tmp_path / "r"),
        "--log-format",
        "json",
    )
    assert proc.returncode == 2
    assert "no such disk image file" in proc.stdout


def test_run_boot_test_needs_a_disk(tmp_path: Path) -> None:
    """run --boot-test without --boot-test-disk is refused before anything is contacted."""
    proc = imageprep(
        "run",
        "--target",
        "ssh://u@192.0.2.1",
        "--no-backup",
        "--reason",
        "t",
        "--boot-test",
        "--run-dir",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 2
    assert "--boot-test needs --boot-test-disk" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_run_boot_test_of_a_windows_target_is_refused_before_anything_changes(
    tmp_path: Path,
) -> None:
    """boot-test boots Linux disks only: a WinRM target with --boot-test is a usage error."""
    need("qemu-system-x86_64", "qemu-img", "debugfs", "mkfs.vfat", "mcopy")
    disk = tmp_path / "windows.raw"
    disk.write_bytes(b"")
    proc = imageprep(
        "run",
        "--target",
        "winrm+https://Administrator@192.0.2.1",
        "--password-env",
        "WINDOWS_PASSWORD",
        "--no-backup",
        "--reason",
        "t",
        "--boot-test",
        "--boot-test-disk",
        str(disk),
        "--run-dir",
        str(tmp_path / "r"),
        env={"WINDOWS_PASSWORD": "not-used"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "--boot-test boots Linux disks only" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_disk_held_by_a_running_vm_is_waited_for_then_refused(tmp_path: Path) -> None:
    """While QEMU holds the image's lock, disk_info waits, then says the VM still uses it."""
    need("qemu-img", "qemu-system-x86_64")
    disk = tmp_path / "busy.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"], check=True)
    # -S: never starts a CPU; it only opens (and locks) the disk.
    holder = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-S",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-drive",
            f"file={disk},if=virtio,format=qcow2",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Until QEMU has taken the lock (a busy 2-core machine can take many seconds).
        deadline = time.monotonic() + 60
        while subprocess.run(["qemu-img", "info", disk], capture_output=True).returncode == 0:
            if holder.poll() is not None or time.monotonic() > deadline:
                pytest.fail("QEMU never locked the disk: the test proves nothing")
            time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(DiskError, match="still in use by a running VM"):
            disk_info(disk, wait_released=1.0)
        assert time.monotonic() - started >= 1.0
    finally:
        holder.terminate()
        holder.wait(10)
    assert disk_info(disk).format == "qcow2"


@pytest.mark.parametrize("command", [["boot-test"], ["vhd"]])
def test_disk_commands_have_help(command: list[str]) -> None:
    """--help works on boot-test and vhd."""
    proc = imageprep(*command, "--help")
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout
