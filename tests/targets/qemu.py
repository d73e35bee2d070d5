"""QemuTarget: one disposable Debian VM (QEMU, TCG here) reachable over SSH on 127.0.0.1.

    with QemuTarget(ensure_vm_image("bookworm")) as vm:
        subprocess.run(vm.ssh_command("sudo", "-n", "true"), check=True)
        ...                                    # the code under test powers it off
        assert vm.wait_powered_off(120)        # QEMU exited by itself after `Power down`
        fs = vm.read_disk()                    # the disk, read from outside with debugfs
        assert fs.read_text("/etc/machine-id") == ""

Each target runs on a fresh qcow2 overlay; nothing ever writes the cached image. By default
it resumes a saved booted state (about 2 s to SSH instead of about 30-40 s cold under TCG):
the state is saved once per image and QEMU command line (save_booted_state), and every
restored VM starts from the same memory, so it has the same machine-id and host keys (the
image's, which known_hosts lists) and a clock frozen at the save: start() sets it from the
host's before returning.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from types import TracebackType

from agent.disks.ext4 import Ext4Reader, find_root_filesystem
from agent.disks.qemu import Drive, QemuVm, VmConfig, choose_accel, free_port
from tests.targets.commands import run, strict_ssh_argv
from tests.targets.mounts import remove_tree
from tests.targets.qemu_image import KERNEL_APPEND, VmImage
from tests.targets.rootfs import _exclusive_lock, cache_root

QEMU = "qemu-system-x86_64"
HOST = "127.0.0.1"
_PROBE_INTERVAL_SECONDS = 0.2
_MIGRATE_TIMEOUT_SECONDS = 120.0


class VmNotReady(RuntimeError):
    """The VM did not answer SSH and reach `running` in time; the message has the console."""


def _config(
    image: VmImage,
    disk: Path,
    disk_format: str,
    workdir: Path,
    *,
    port: int,
    incoming: str | None = None,
) -> VmConfig:
    return VmConfig(
        qemu=shutil.which(QEMU) or QEMU,
        drives=[Drive(disk, disk_format)],
        console_log=workdir / "console.log",
        accel=choose_accel("auto"),
        kernel=image.kernel,
        initrd=image.initrd,
        append=KERNEL_APPEND,
        ssh_port=port,
        qmp_socket=workdir / "qmp.sock",
        incoming=incoming,
    )


def snapshot_dir(image: VmImage) -> Path:
    """Where the booted state for `image` and this machine's QEMU command line lives."""
    template = _config(image, Path("DISK"), "qcow2", Path("WORK"), port=0).argv()[1:]
    version = run([QEMU, "--version"]).splitlines()[0]
    key = hashlib.sha256(json.dumps([template, version]).encode()).hexdigest()[:12]
    return image.entry / f"snap-{key}"


def save_booted_state(image: VmImage) -> Path:
    """Boot `image` cold once, wait until it is `running`, and save disk + memory state."""
    snap = snapshot_dir(image)
    if (snap / "snap.json").is_file():
        return snap
    cache = cache_root()
    with _exclusive_lock(cache / ".lock"):
        if (snap / "snap.json").is_file():
            return snap
        work = Path(tempfile.mkdtemp(prefix=".snap-", dir=image.entry))
        try:
            _save_into(image, work)
            if snap.exists():
                remove_tree(snap)
            work.rename(snap)
        except BaseException:
            remove_tree(work)
            raise
    return snap


def _save_into(image: VmImage, work: Path) -> None:
    run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            image.disk,
            work / "disk.qcow2",
        ]
    )
    port = free_port()
    vm = QemuVm(_config(image, work / "disk.qcow2", "qcow2", work, port=port), work / "qemu.log")
    launched = time.monotonic()
    vm.start()
    try:
        _wait_ready(vm, image, port, launched + 300)
        cold = time.monotonic() - launched
        qmp = vm.qmp()
        try:
            qmp.execute("stop")
            qmp.execute("migrate", uri=f"exec:cat > {work / 'vmstate'}")
            deadline = time.monotonic() + _MIGRATE_TIMEOUT_SECONDS
            while (status := qmp.execute("query-migrate").get("status")) != "completed":
                if status == "failed" or time.monotonic() > deadline:
                    raise VmNotReady(f"saving the booted state: migration {status}")
                time.sleep(0.2)
            qmp.execute("quit")
        finally:
            qmp.close()
        vm.wait(30)
    finally:
        vm.stop()
    (work / "snap.json").write_text(
        json.dumps(
            {
                "cold_boot_to_ready_s": round(cold, 2),
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n"
    )
    for leftover in ("console.log", "qemu.log", "qmp.sock"):
        (work / leftover).unlink(missing_ok=True)


def _probe(
    image: VmImage, port: int, timeout: float, *remote: str
) -> subprocess.CompletedProcess[str] | None:
    # Readiness does not depend on the host key: nothing but this VM answers on the port.
    argv = [
        "ssh",
        "-F",
        "none",
        "-i",
        str(image.rootfs.credentials.client_key),
        "-p",
        str(port),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=3",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        f"{image.rootfs.login_user}@{HOST}",
        *(remote or ("systemctl", "is-system-running", "--wait")),
    ]
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=max(timeout, 1),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None


def _wait_ready(vm: QemuVm, image: VmImage, port: int, deadline: float) -> None:
    last = ""
    while time.monotonic() < deadline:
        if not vm.is_running():
            raise VmNotReady(
                f"QEMU exited ({vm.returncode}) during boot: {vm.log_text()}\n"
                f"console:\n{vm.console_tail()}"
            )
        probe = _probe(image, port, min(60.0, deadline - time.monotonic()))
        if probe is None or probe.returncode == 255:
            last = probe.stderr.strip() if probe else "ssh probe timed out"
            time.sleep(_PROBE_INTERVAL_SECONDS)
            continue
        state = probe.stdout.strip()
        if state == "running":
            return
        failed = _probe(image, port, 30, "systemctl", "--failed", "--no-legend")
        raise VmNotReady(
            f"VM booted {state!r}, not 'running'; failed units:\n"
            f"{failed.stdout if failed else '?'}\nconsole:\n{vm.console_tail()}"
        )
    raise VmNotReady(
        f"VM not ready in time (last ssh error: {last})\nconsole:\n{vm.console_tail()}"
    )


class QemuTarget:
    """A fresh VM from `image`: restored from the saved booted state, or booted cold."""

    def __init__(
        self,
        image: VmImage,
        *,
        restore: bool = True,
        boot_timeout: float = 300.0,
        workdir_parent: Path | None = None,
    ) -> None:
        self.image = image
        self._restore = restore
        self._boot_timeout = boot_timeout
        self._workdir_parent = workdir_parent
        self._teardown = ExitStack()
        self._workdir: Path | None = None
        self._vm: QemuVm | None = None
        self.port = 0
        self.ready_after: float | None = None
        """Seconds from launching QEMU to SSH answering with the system `running`."""

    def __enter__(self) -> QemuTarget:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- what tests connect to and inspect ------------------------------------------------

    host = HOST

    @property
    def name(self) -> str:
        return f"vm-{self.image.suite}-{self.port}"

    @property
    def user(self) -> str:
        return self.image.rootfs.login_user

    @property
    def key_path(self) -> Path:
        return self.image.rootfs.credentials.client_key

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("the VM has not been started")
        return self._workdir

    @property
    def known_hosts_path(self) -> Path:
        """known_hosts naming [127.0.0.1]:port with the image's host keys."""
        return self.workdir / "known_hosts"

    @property
    def disk(self) -> Path:
        """This VM's qcow2 overlay (its backing chain: the snapshot's disk, base.raw)."""
        return self.workdir / "disk.qcow2"

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    @property
    def vm(self) -> QemuVm:
        if self._vm is None:
            raise RuntimeError("the VM has not been started")
        return self._vm

    def ssh_command(self, *remote: str) -> list[str]:
        """OpenSSH client argv running `remote` as `user`, checking the host key strictly."""
        return strict_ssh_argv(
            key=self.key_path,
            port=self.port,
            known_hosts=self.known_hosts_path,
            login=f"{self.user}@{self.host}",
            remote=remote,
        )

    def is_running(self) -> bool:
        return self._vm is not None and self._vm.is_running()

    def wait_powered_off(self, timeout: float) -> bool:
        """True iff QEMU exits within `timeout` s because the guest powered off."""
        return self.vm.wait(timeout) and self.vm.powered_off()

    def read_disk(self) -> Ext4Reader:
        """The guest's root filesystem, from a raw copy of the overlay (the VM must be off)."""
        if self.is_running():
            raise RuntimeError("read_disk() needs the VM powered off")
        raw = self.workdir / "inspect.raw"
        if not raw.exists():
            run(["qemu-img", "convert", "-O", "raw", self.disk, raw], timeout=300)
        return find_root_filesystem(raw)

    def console_tail(self, lines: int = 40) -> str:
        return self._vm.console_tail(lines) if self._vm else "(not started)"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._workdir is not None:
            raise RuntimeError("a QemuTarget starts once; make a new one")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def stop(self) -> None:
        if self._vm is not None:
            self._vm.stop()

    def close(self) -> None:
        self._teardown.close()

    def _start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="imageprep-vm-", dir=self._workdir_parent))
        self._teardown.callback(remove_tree, self._workdir)
        if self._restore:
            snap = save_booted_state(self.image)
            base, base_format, incoming = (
                snap / "disk.qcow2",
                "qcow2",
                f"exec:cat {snap / 'vmstate'}",
            )
        else:
            base, base_format, incoming = self.image.disk, "raw", None
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", base, self.disk])
        self.port = free_port()
        self.known_hosts_path.write_text(
            "".join(f"[{HOST}]:{self.port} {key}\n" for key in self.image.rootfs.host_public_keys())
        )
        self._vm = QemuVm(
            _config(
                self.image, self.disk, "qcow2", self.workdir, port=self.port, incoming=incoming
            ),
            self.workdir / "qemu.log",
        )
        launched = time.monotonic()
        self._vm.start()
        self._teardown.callback(self._vm.stop)
        deadline = launched + self._boot_timeout
        if incoming is not None:
            self._resume(deadline)
        _wait_ready(self._vm, self.image, self.port, deadline)
        self.ready_after = time.monotonic() - launched
        if incoming is not None:
            self._set_clock()

    def _resume(self, deadline: float) -> None:
        # The state was saved from a stopped VM, so it arrives paused: `cont` is required,
        # or SSH hangs in SYN_SENT.
        qmp = self.vm.qmp()
        try:
            while qmp.execute("query-status").get("status") == "inmigrate":
                if time.monotonic() > deadline or not self.vm.is_running():
                    raise VmNotReady(f"restoring the booted state failed: {self.vm.log_text()}")
                time.sleep(0.05)
            qmp.execute("cont")
        finally:
            qmp.close()

    def _set_clock(self) -> None:
        result = subprocess.run(
            self.ssh_command("sudo", "-n", "date", "-u", "-s", f"@{time.time():.3f}"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise VmNotReady(f"setting the restored guest's clock failed: {result.stderr}")


def remove_snapshots(image: VmImage) -> None:
    """Drop saved booted states (after a QEMU upgrade, say); they are rebuilt on demand."""
    for snap in image.entry.glob("snap-*"):
        with suppress(FileNotFoundError):
            remove_tree(snap)
