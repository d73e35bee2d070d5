"""One QEMU x86-64 VM on this machine: command line, accelerator, console, QMP, SSH forward.

Choices that come from measurements on the project's machines (tests' reference notes):
- KVM only where the CPU flags show vmx/svm and /dev/kvm opens; otherwise TCG. A /dev/kvm
  from a nested software hypervisor (kvm_pvm) exists without those flags and cannot run a
  stock Debian kernel ("KVM internal error. Suberror: 1").
- User-mode networking with `restrict=on` (the guest reaches nothing outside) and one port
  forward to the guest's SSH on 127.0.0.1 only.
- `-no-reboot`: a guest that reboots makes QEMU exit instead of booting again.
- QEMU exits 0 on SIGTERM too: a real guest power-off is told apart by the console's
  `reboot: Power down`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import DiskError

POWER_DOWN = "reboot: Power down"
_CPUINFO = Path("/proc/cpuinfo")
_KVM = Path("/dev/kvm")
_STOP_SECONDS = 10.0


def kvm_usable() -> bool:
    """True where hardware virtualisation is advertised (vmx/svm) and /dev/kvm opens."""
    try:
        flags = {
            word
            for line in _CPUINFO.read_text().splitlines()
            if line.startswith("flags")
            for word in line.split(":", 1)[1].split()
        }
    except OSError:
        return False
    if not flags & {"vmx", "svm"}:
        return False
    try:
        fd = os.open(_KVM, os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def choose_accel(requested: str) -> str:
    """`kvm` or `tcg` for --accel auto|kvm|tcg."""
    if requested == "auto":
        return "kvm" if kvm_usable() else "tcg"
    if requested not in ("kvm", "tcg"):
        raise DiskError(f"--accel {requested}: expected auto, kvm or tcg")
    return requested


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Drive:
    """One virtio disk."""

    path: Path
    format: str
    read_only: bool = False


@dataclass
class VmConfig:
    """Everything that makes up the QEMU command line."""

    qemu: str
    drives: Sequence[Drive]
    console_log: Path
    accel: str = "tcg"
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    memory_mib: int = 1024
    smp: int = 2
    ssh_port: int | None = None
    qmp_socket: Path | None = None
    incoming: str | None = None
    extra: Sequence[str] = field(default_factory=tuple)

    def argv(self) -> list[str]:
        accel = (
            ["-accel", "kvm", "-cpu", "host"]
            if self.accel == "kvm"
            else ["-accel", "tcg,thread=multi", "-cpu", "max"]
        )
        argv = [
            self.qemu,
            *accel,
            "-machine",
            "q35",
            "-m",
            str(self.memory_mib),
            "-smp",
            str(self.smp),
        ]
        if self.kernel is not None:
            argv += ["-kernel", str(self.kernel)]
            if self.initrd is not None:
                argv += ["-initrd", str(self.initrd)]
            if self.append:
                argv += ["-append", self.append]
        for drive in self.drives:
            spec = f"file={_comma_safe(drive.path)},if=virtio,format={drive.format},cache=unsafe"
            if drive.read_only:
                spec += ",readonly=on"
            argv += ["-drive", spec]
        netdev = "user,id=n0,restrict=on"
        if self.ssh_port is not None:
            netdev += f",hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22"
        argv += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"]
        argv += ["-display", "none", "-serial", f"file:{self.console_log}", "-no-reboot"]
        if self.qmp_socket is not None:
            argv += ["-qmp", f"unix:{self.qmp_socket},server=on,wait=off", "-monitor", "none"]
        else:
            argv += ["-monitor", "none"]
        if self.incoming is not None:
            argv += ["-incoming", self.incoming]
        return [*argv, *self.extra]


def _comma_safe(path: Path) -> str:
    # QEMU's option syntax escapes a comma by doubling it.
    return str(path).replace(",", ",,")


class QemuVm:
    """A running QEMU process for `config`; its own stdout/stderr go to `log`."""

    def __init__(self, config: VmConfig, log: Path) -> None:
        self.config = config
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._stop_requested = False

    def start(self) -> None:
        self.config.console_log.write_bytes(b"")
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(
                self.config.argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for QEMU to exit; True if it has."""
        if self._process is None:
            return True
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def exited_by_itself(self) -> bool:
        return self.returncode is not None and not self._stop_requested

    def powered_off(self) -> bool:
        """True iff QEMU exited 0 on its own and the console shows the kernel's power-down."""
        return self.exited_by_itself and self.returncode == 0 and POWER_DOWN in self.console_text()

    def stop(self) -> None:
        """SIGTERM (QEMU quits at once), then SIGKILL; by PID, never by name."""
        if not self.is_running() or self._process is None:
            return
        self._stop_requested = True
        self._process.send_signal(signal.SIGTERM)
        if not self.wait(_STOP_SECONDS):
            self._process.kill()
            self.wait(_STOP_SECONDS)

    def console_text(self) -> str:
        try:
            return self.config.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console_tail(self, lines: int = 40) -> str:
        return "\n".join(self.console_text().replace("\r", "").rstrip().splitlines()[-lines:])

    def qmp(self, timeout: float = 30.0) -> Qmp:
        if self.config.qmp_socket is None:
            raise RuntimeError("this VM was started without a QMP socket")
        return Qmp.connect(self.config.qmp_socket, timeout=timeout)


class Qmp:
    """A minimal QMP client: send one command, return its `return` value; events are skipped."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    @classmethod
    def connect(cls, path: Path, timeout: float = 30.0) -> Qmp:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(str(path))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client = cls(sock)
        client._message()  # greeting
        client.execute("qmp_capabilities")
        return client

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._message()
            if "return" in message:
                return message["return"]
            if "error" in message:
                raise RuntimeError(f"QMP {command}: {message['error']}")

    def _message(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP socket closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
