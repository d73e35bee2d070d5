"""The VM flavour of a test image: an ext4 disk, its kernel and initrd, and a booted state.

It reuses rootfs.py: the same mmdebstrap tree, provisioned by the same offline cloud-init
first boot (so azureuser, the host keys in credentials/ and the lived-in state are the
containers'), plus linux-image-cloud-amd64. VM-only changes go into a copy of the tree just
before `mkfs.ext4 -d`, never into the shared lower dir:
- systemd-networkd with DHCP on eth0 (QEMU's user-mode network); the containers' address is
  set from outside, so their image has no .network file;
- /etc/fstab for the root on /dev/vda.

Cache layout, next to the container images (rootfs.cache_root()):

    vm-<suite>-<key>/
        base.raw  vmlinuz  initrd.img  build.json     (appears by an atomic rename)
        snap-<cmdline key>/disk.qcow2 vmstate snap.json   (a saved booted state)

<key> hashes the root filesystem's own key and this file; the snapshot's key adds the QEMU
command line and QEMU's version, since -incoming needs the very same machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.targets.commands import run
from tests.targets.guestpath import guest_path
from tests.targets.mounts import remove_tree
from tests.targets.rootfs import (
    PACKAGES,
    ImageSpec,
    Log,
    TargetImage,
    _exclusive_lock,
    _log_to_stderr,
    _require_tools,
    cache_root,
    ensure_image,
)

KERNEL_PACKAGE = "linux-image-cloud-amd64"
SUITES = ("bookworm", "trixie")
DISK_SIZE = "2G"
ROOT_LABEL = "imageprep-root"
KERNEL_APPEND = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
_VM_TOOLS = ("mkfs.ext4", "qemu-img", "qemu-system-x86_64", "chroot", "cp")

_NETWORK = """\
# imageprep VM test target: DHCP from QEMU's user-mode network.
[Match]
Name=eth0 en*

[Network]
DHCP=ipv4
"""
_FSTAB = "# imageprep VM test target\n/dev/vda / ext4 rw,errors=remount-ro 0 1\n"


def vm_spec(suite: str) -> ImageSpec:
    """The root filesystem spec of a VM image: the container packages plus the cloud kernel."""
    return ImageSpec(suite=suite, packages=(*PACKAGES, KERNEL_PACKAGE))


@dataclass(frozen=True)
class VmImage:
    """A built VM image in the cache, and the root filesystem image it was made from."""

    rootfs: TargetImage
    entry: Path

    @property
    def suite(self) -> str:
        return self.rootfs.spec.suite

    @property
    def disk(self) -> Path:
        """The ext4 root filesystem as a raw disk; only ever a backing file."""
        return self.entry / "base.raw"

    @property
    def kernel(self) -> Path:
        return self.entry / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.entry / "initrd.img"

    @property
    def build_info(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.entry / "build.json").read_text())
        return loaded


def ensure_vm_image(suite: str, *, cache: Path | None = None, log: Log | None = None) -> VmImage:
    """The cached VM image for `suite`, building the root filesystem and disk if needed."""
    say = log or _log_to_stderr
    cache = cache or cache_root()
    rootfs = ensure_image(vm_spec(suite), cache=cache, log=say)
    key = hashlib.sha256(
        rootfs.entry.name.encode() + b"\0" + Path(__file__).read_bytes()
    ).hexdigest()[:16]
    image = VmImage(rootfs, cache / f"vm-{suite}-{key}")
    if image.disk.is_file():
        return image
    with _exclusive_lock(cache / ".lock"):
        if not image.disk.is_file():
            _build_disk(image, cache, say)
    return image


def _build_disk(image: VmImage, cache: Path, log: Log) -> None:
    _require_tools(_VM_TOOLS)
    if image.entry.exists():
        remove_tree(image.entry)
    work = Path(tempfile.mkdtemp(prefix=f".build-{image.entry.name}-", dir=cache))
    try:
        started = time.monotonic()
        tree = work / "tree"
        # A copy: the lower dir is shared with running containers and must stay as it is.
        run(["cp", "-a", "--reflink=auto", f"{image.rootfs.lower}/.", f"{tree}/"], timeout=300)
        _adapt_for_vm(tree)
        kernel = _newest(tree / "boot", "vmlinuz-")
        version = kernel.name.removeprefix("vmlinuz-")
        shutil.copyfile(kernel, work / "vmlinuz")
        shutil.copyfile(tree / "boot" / f"initrd.img-{version}", work / "initrd.img")
        disk = work / "base.raw"
        run(["truncate", "-s", DISK_SIZE, disk])
        run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", tree, disk], timeout=300)
        remove_tree(tree)
        (work / "build.json").write_text(
            json.dumps(
                {
                    "suite": image.suite,
                    "kernel": version,
                    "rootfs": image.rootfs.entry.name,
                    "build_s": round(time.monotonic() - started, 2),
                },
                indent=2,
            )
            + "\n"
        )
        os.rename(work, image.entry)
    except BaseException:
        remove_tree(work)
        raise
    log(f"VM image ready: {image.entry} ({time.monotonic() - started:.1f}s)")


def _adapt_for_vm(tree: Path) -> None:
    network = guest_path(tree, "/etc/systemd/network/20-imageprep-vm.network", follow_last=False)
    network.parent.mkdir(parents=True, exist_ok=True)
    network.write_text(_NETWORK)
    guest_path(tree, "/etc/fstab", follow_last=False).write_text(_FSTAB)
    run(
        ["chroot", tree, "systemctl", "enable", "systemd-networkd.service"],
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def _newest(directory: Path, prefix: str) -> Path:
    found = sorted(directory.glob(f"{prefix}*"))
    if not found:
        raise FileNotFoundError(f"no {prefix}* in {directory}")
    return found[-1]
