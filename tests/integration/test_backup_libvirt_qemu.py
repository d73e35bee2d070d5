"""libvirt: against a real QEMU domain (TCG) under a real libvirtd, restored with the hint.

Uses the host's libvirtd when its socket exists; otherwise starts a private libvirtd (and
virtlogd if none runs) with its own socket directory, and stops them afterwards. Needs
root and Debian's libvirt-daemon-system (the libvirt-qemu user, libvirtd, virtlogd),
libvirt-clients (virsh) and qemu-system-x86 + qemu-utils; skips, saying what is missing,
where those are absent: tests/setup.sh does not install a libvirt daemon, which on a
systemd host would start system services and a default network. Slow: without /dev/kvm
libvirt 9.0 re-probes QEMU's capabilities before starting the domain (about 40 s here).
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from agent.backups import BackupContext, provider_from_spec
from agent.targets import Target
from tests.local_executor import LocalShellExecutor

pytestmark = pytest.mark.integration

_SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
_VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
_TOOLS = ("/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "virsh", "qemu-system-x86_64", "qemu-img")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run a system-mode libvirtd"
    absent = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if absent:
        return f"missing {', '.join(absent)} (apt install libvirt-daemon-system libvirt-clients)"
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        return "no libvirt-qemu user: apt install libvirt-daemon-system"
    return None


def _wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.skip(f"libvirtd cannot run here: {log.read_text()[-600:]}")
        time.sleep(0.05)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def libvirt_uri() -> Iterator[str]:
    """A qemu:///system URI of a running libvirtd: the host's, or a private one."""
    reason = _missing()
    if reason:
        pytest.skip(f"no real libvirtd for QEMU: {reason}")
    if _SYSTEM_SOCKET.exists():
        yield "qemu:///system"
        return
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="imageprep-libvirtd-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        (work / "sock").mkdir()
        conf = work / "libvirtd.conf"
        conf.write_text(
            f'unix_sock_dir = "{work}/sock"\nunix_sock_rw_perms = "0700"\n'
            'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
        )
        if not _VIRTLOGD_SOCKET.exists():  # QEMU's console log goes through virtlogd
            log = work / "virtlogd.log"
            virtlogd = _start(["/usr/sbin/virtlogd", "-p", str(work / "virtlogd.pid")], log)
            stack.callback(_stop, virtlogd)
            _wait_for(_VIRTLOGD_SOCKET, virtlogd, log)
        log = work / "libvirtd.log"
        libvirtd = _start(
            ["/usr/sbin/libvirtd", "-f", str(conf), "-p", str(work / "libvirtd.pid")], log
        )
        stack.callback(_stop, libvirtd)
        _wait_for(work / "sock" / "libvirt-sock", libvirtd, log)
        yield f"qemu:///system?socket={work}/sock/libvirt-sock"


@pytest.fixture
def qemu_domain(libvirt_uri: str) -> Iterator[tuple[str, Path]]:
    """A running QEMU (TCG) domain with one empty qcow2 disk; undefined afterwards."""
    import libvirt

    work = Path(tempfile.mkdtemp(prefix="imageprep-qemu-"))
    work.chmod(0o755)  # QEMU runs as libvirt-qemu and must reach the image
    disk = work / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    name = f"imageprep-it-{uuid.uuid4().hex[:8]}"
    conn = libvirt.open(libvirt_uri)
    dom: Any = conn.defineXML(
        f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory>
        <vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
        <devices><emulator>{shutil.which("qemu-system-x86_64")}</emulator>
        <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='{disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""
    )
    try:
        dom.create()
        yield name, disk
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        conn.close()
        shutil.rmtree(work, ignore_errors=True)


def test_snapshot_of_a_running_qemu_domain_restores_with_the_hint(
    libvirt_uri: str, qemu_domain: tuple[str, Path], tmp_path: Path
) -> None:
    """An internal disk+memory snapshot lands in the qcow2, and the hint's virsh reverts it."""
    import libvirt

    name, disk = qemu_domain
    context = BackupContext(
        run_id="itqemu",
        target=Target("ssh", "azureuser", "vm", 22),
        paths=(),
        run_dir=tmp_path,
    )
    provider = provider_from_spec(f"libvirt:{name}?uri={quote(libvirt_uri, safe='')}")
    record = provider.take(LocalShellExecutor(), context)
    print(f"libvirt snapshot of a running QEMU domain: {record.duration:.3f} s")

    assert record.details["memory"] == "internal"
    assert record.details["disks"] == "vda=internal"
    listing = subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", str(disk)], capture_output=True, text=True, check=True
    ).stdout
    assert "imageprep-itqemu" in listing

    conn = libvirt.open(libvirt_uri)
    try:
        dom = conn.lookupByName(name)
        dom.destroy()  # as if generalization had powered it off
        subprocess.run(shlex.split(record.restore_hint), check=True, capture_output=True)
        state, reason = dom.state()
        assert state == libvirt.VIR_DOMAIN_RUNNING
        assert reason == libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT
    finally:
        conn.close()
