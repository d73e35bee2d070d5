"""One `systemd-nspawn --boot` process: start it, find its init, run commands in it, stop it.

The host has no systemd/machined (test-targets.md, section (c)), hence `--register=no
--keep-unit`, and no `machinectl shell`: commands go in through `nsenter` on the container's
init. Everything is addressed by PID, never by a process name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.targets.cgroups import PrivateCgroup
from tests.targets.commands import tail

_GRACEFUL_STOP_SECONDS = 15.0
_KILL_WAIT_SECONDS = 10.0

# A Debian 12 VM keeps /tmp on its disk; nspawn would mount a tmpfs over it and hide the
# /tmp leftovers the image ships for the cleanup tests (systemd's docs/ENVIRONMENT.md).
_NSPAWN_ENV = {"SYSTEMD_NSPAWN_TMPFS_TMP": "0"}

# Joins the private cgroup(s) before exec'ing nspawn, so nspawn's very first look at its own
# cgroup already sees the private one (cgroups.py says why it needs one).
_JOIN_CGROUPS_THEN_EXEC = (
    'for procs in $IMAGEPREP_CGROUP_PROCS; do echo $$ > "$procs"; done; exec "$@"'
)


class ContainerError(RuntimeError):
    """The container did not start, boot or stop as expected; the message has the console tail."""


class NspawnProcess:
    """A booted container over `root`, with its console written to `console_log`."""

    def __init__(
        self,
        root: Path,
        machine: str,
        console_log: Path,
        network: Sequence[str],
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.machine = machine
        self.console_log = console_log
        self._network = list(network)
        self._env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._cgroup: PrivateCgroup | None = None
        self._leader: tuple[int, str] | None = None
        self._stop_requested = False

    def argv(self) -> list[str]:
        """The systemd-nspawn command line (network arguments included)."""
        return [
            "systemd-nspawn",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--quiet",
            f"--directory={self.root}",
            f"--machine={self.machine}",
            "--console=read-only",
            "--link-journal=no",  # never bind the guest journal into the host's /var/log/journal
            "--resolv-conf=off",  # resolv.conf is guest state the cleanup deals with; leave it
            "--timezone=off",  # otherwise nspawn rewrites /etc/localtime: noise in the diff
            *self._network,
        ]

    def start(self) -> None:
        """Launch nspawn in the background; it boots the guest's systemd as PID 1."""
        self._cgroup = PrivateCgroup.create(self.machine)
        cgroup_procs = " ".join(str(path) for path in self._cgroup.procs_files)
        with self.console_log.open("wb") as console, _removed_on_error(self._cgroup):
            self._process = subprocess.Popen(
                ["sh", "-c", _JOIN_CGROUPS_THEN_EXEC, "sh", *self.argv()],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    **_NSPAWN_ENV,
                    **self._env,
                    "IMAGEPREP_CGROUP_PROCS": cgroup_procs,
                },
                # Own session: a Ctrl-C in the caller's terminal must reach our teardown,
                # not nspawn directly.
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        """PID of the systemd-nspawn process."""
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        """nspawn's exit code once it has exited (0 after a guest poweroff)."""
        return self._process.poll() if self._process else None

    @property
    def stopped_by_itself(self) -> bool:
        """True when nspawn has exited without stop() asking it to (the guest shut down)."""
        return self.returncode is not None and not self._stop_requested

    def is_running(self) -> bool:
        """True while systemd-nspawn is alive."""
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for nspawn to exit; True if it has."""
        if self._process is None:
            return False
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def wait_for_leader(self, timeout: float) -> int:
        """PID (host view) of the container's init, once nspawn has forked it."""
        deadline = time.monotonic() + timeout
        while self._leader is None:
            if not self.is_running():
                raise ContainerError(f"systemd-nspawn exited early:\n{self.console_tail()}")
            self._leader = _child_in_other_pid_namespace(self.pid or 0)
            if self._leader is None:
                if time.monotonic() > deadline:
                    raise ContainerError(f"no container init after {timeout}s")
                time.sleep(0.02)
        return self._leader[0]

    def exec_inside(
        self, argv: Sequence[str], *, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the container (its mount, UTS, IPC, net and PID namespaces)."""
        leader = self.wait_for_leader(timeout)
        return subprocess.run(
            [
                "nsenter",
                f"--target={leader}",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--pid",
                "--",
                *argv,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self, timeout: float = _GRACEFUL_STOP_SECONDS) -> None:
        """Shut the guest down (SIGTERM: nspawn halts it; then SIGKILL); remove its cgroup."""
        if self.is_running():
            self._stop_requested = True
            self._signal_nspawn(signal.SIGTERM)
            if not self.wait(timeout):
                # A SIGKILLed nspawn would orphan the guest, so kill the PID namespace's
                # init first: the kernel then kills every process in that namespace.
                self._kill_leader()
                self._signal_nspawn(signal.SIGKILL)
                if not self.wait(_KILL_WAIT_SECONDS):
                    raise ContainerError(f"systemd-nspawn (pid {self.pid}) survived SIGKILL")
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None

    def console_tail(self, lines: int = 40) -> str:
        """The last lines the guest wrote to its console."""
        try:
            return tail(self.console_log.read_text(errors="replace"), lines)
        except FileNotFoundError:
            return "(no console log)"

    def _signal_nspawn(self, signum: signal.Signals) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def _kill_leader(self) -> None:
        if self._leader is None:
            return
        pid, namespace = self._leader
        # Only if that PID still is the init we recorded (PIDs get reused).
        if _pid_namespace(pid) == namespace:
            os.kill(pid, signal.SIGKILL)


@contextmanager
def _removed_on_error(cgroup: PrivateCgroup) -> Iterator[None]:
    try:
        yield
    except BaseException:
        cgroup.remove()
        raise


def _child_in_other_pid_namespace(parent: int) -> tuple[int, str] | None:
    own = _pid_namespace(os.getpid())
    for pid in _children(parent):
        namespace = _pid_namespace(pid)
        if namespace is not None and namespace != own:
            return pid, namespace
    return None


def _children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
