"""libvirt: against a real QEMU domain (TCG) under a real libvirtd, restored with the hint.

Never the host's libvirtd: a private one, with virtlogd, in a mount namespace of its
own (``unshare --mount``). libvirt's directories (/etc/libvirt, /run/libvirt,
/var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt) are the test's own folders
there, so the host's are never written; its qemu.conf runs QEMU as root, and the
libvirt-qemu account libvirtd insists on exists only in the namespace's view of
/etc/passwd. Needs root and Debian's libvirt-daemon and libvirt-daemon-driver-qemu
(binaries, no services: tests/setup.sh installs them; libvirt-daemon-system, which
starts system services and a default network, is not needed), libvirt-clients (virsh)
and qemu-system-x86 + qemu-utils.
Without them it skips, and with IMAGEPREP_REQUIRE_TARGETS=1 (CI) it fails. About 20 s
here: without /dev/kvm libvirt 9.0 probes QEMU's capabilities first.
"""

from __future__ import annotations

import os
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

_TOOLS = ("/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "virsh", "qemu-system-x86_64", "qemu-img")
# Where libvirtd and virtlogd keep configuration and state: private in the namespace.
_LIBVIRT_DIRS = (
    "/etc/libvirt",
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/log/libvirt",
    "/var/cache/libvirt",
)
# Inside the namespace: every libvirt directory bound to the test's own, then virtlogd
# (QEMU's console log goes through it) and libvirtd in the foreground.
_PRIVATE_DAEMONS = """
set -eu
work=$1
for dir in {dirs}; do
    mkdir -p "$work/root$dir"
    mount --bind "$work/root$dir" "$dir"
done
cp "$work/qemu.conf" /etc/libvirt/qemu.conf
# libvirtd resolves its built-in QEMU user before it reads qemu.conf: that user exists
# in the namespace's view of the account files only.
if ! getent passwd libvirt-qemu >/dev/null; then
    cp /etc/passwd "$work/passwd"
    cp /etc/group "$work/group"
    echo "libvirt-qemu:x:64055:64055:libvirt (test namespace):/nonexistent:/usr/sbin/nologin" \
        >>"$work/passwd"
    echo "libvirt-qemu:x:64055:" >>"$work/group"
    mount --bind "$work/passwd" /etc/passwd
    mount --bind "$work/group" /etc/group
fi
# In the background, not --daemon: it stays in this process group, which _stop ends.
/usr/sbin/virtlogd --pid-file "$work/virtlogd.pid" &
exec /usr/sbin/libvirtd -f "$work/libvirtd.conf" --pid-file "$work/libvirtd.pid"
""".format(dirs=" ".join(_LIBVIRT_DIRS))


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run a system-mode libvirtd"
    absent = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if absent:
        return (
            f"missing {', '.join(absent)} "
            "(apt install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients)"
        )
    return None


def _wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the private libvirtd did not start: {log.read_text()[-600:]}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # The namespace's processes: libvirtd (the leader after exec) and virtlogd.
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _private_libvirtd(work: Path, stack: ExitStack) -> str:
    for mount_point in _LIBVIRT_DIRS:
        # Empty mount points on the host, what the packages would have made.
        Path(mount_point).mkdir(parents=True, exist_ok=True)
    (work / "sock").mkdir()
    (work / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{work}/sock"\nunix_sock_rw_perms = "0700"\n'
        'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
    )
    (work / "qemu.conf").write_text('user = "root"\ngroup = "root"\n')
    log = work / "libvirtd.log"
    with log.open("wb") as out:
        daemons = subprocess.Popen(
            [
                *("unshare", "--mount", "--propagation", "private"),
                *("sh", "-c", _PRIVATE_DAEMONS, "sh", str(work)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.callback(_stop, daemons)
    _wait_for(work / "sock" / "libvirt-sock", daemons, log)
    return f"qemu:///system?socket={work}/sock/libvirt-sock"


@pytest.fixture(scope="module")
def libvirt_uri() -> Iterator[str]:
    """The qemu:///system URI of a private libvirtd, stopped afterwards."""
    reason = _missing()
    if reason and os.environ.get("IMAGEPREP_REQUIRE_TARGETS") == "1":
        pytest.fail(f"no real libvirtd for QEMU: {reason}")
    if reason:
        pytest.skip(f"no real libvirtd for QEMU: {reason}")
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="imageprep-libvirtd-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        yield _private_libvirtd(work, stack)


@pytest.fixture
def qemu_domain(libvirt_uri: str) -> Iterator[tuple[str, Path]]:
    """A running QEMU (TCG) domain with one empty qcow2 disk; undefined afterwards."""
    import libvirt

    work = Path(tempfile.mkdtemp(prefix="imageprep-qemu-"))
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
