"""NspawnTarget: one disposable, booted Debian target reachable over SSH on a private link.

    with NspawnTarget(ensure_image()) as target:
        subprocess.run(target.ssh_command("sudo", "-n", "true"), check=True)
        ...                                   # the code under test works on the target
        assert target.wait_stopped(30)        # it powered the guest off
        assert not target.guest_path("/etc/machine-id").read_text()   # inspect from outside

Layers: an overlay mount (the cached image as the shared read-only lower dir, a fresh upper
dir that ends up holding exactly what the target changed), a private network namespace with
one veth link (netns.py), and `systemd-nspawn --boot` (container.py) booting the image's
systemd, sshd and cloud-init. Destructive commands only ever run inside the container; the
host side only mounts, creates links and removes this target's own temporary directory.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TypeVar

from tests.targets.commands import strict_ssh_argv
from tests.targets.container import NspawnProcess
from tests.targets.guestpath import guest_path
from tests.targets.mounts import mount_overlay, remove_tree, unmount
from tests.targets.netns import Link, private_link
from tests.targets.rootfs import TargetImage

Prepare = Callable[[Path], None]
"""Called with the merged root before boot; resolve guest paths with guest_path(root, ...)."""

_T = TypeVar("_T")

SSH_PORT = 22
_PROBE_INTERVAL_SECONDS = 0.1


class TargetNotReady(RuntimeError):
    """The target did not become reachable and `running` in time; the message has the console."""


def boot_failure_hint(output: str) -> str:
    """A line naming the host limit behind a failed boot, or "" when `output` shows none.

    Out of inotify instances, PID 1 dies ("Too many open files") or, when it got its own,
    a `.path` unit fails: path units are inotify watches, and nothing else fails them in a
    fresh target (seen with 22 targets booting at once under Debian's default of 128).
    """
    if "Too many open files" not in output and ".path " not in output:
        return ""
    limit = Path("/proc/sys/fs/inotify/max_user_instances").read_text().strip()
    return (
        f"\nhint: the host is out of inotify instances (fs.inotify.max_user_instances = {limit};"
        " each booted target holds 8): run tests/targets/host-limits.sh as root"
    )


class NspawnTarget:
    """A fresh target from `image`; a context manager that boots it and tears everything down."""

    def __init__(
        self,
        image: TargetImage,
        *,
        prepare: Prepare | None = None,
        boot_timeout: float = 90.0,
        workdir_parent: Path | None = None,
    ) -> None:
        self.image = image
        self._prepare = prepare
        self._boot_timeout = boot_timeout
        self._workdir_parent = workdir_parent
        self._teardown = ExitStack()
        self._workdir: Path | None = None
        self._link: Link | None = None
        self._container: NspawnProcess | None = None
        self.ready_after: float | None = None
        """Seconds from launching nspawn to SSH answering and the system being `running`."""

    def __enter__(self) -> NspawnTarget:
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

    @property
    def name(self) -> str:
        """Machine name (also the guest's UTS hostname until its /etc/hostname applies)."""
        return f"imageprep-{self._required(self._link).slot}"

    @property
    def link(self) -> Link:
        """The private link (namespace and veth names, addresses)."""
        return self._required(self._link)

    @property
    def pid(self) -> int | None:
        """PID of systemd-nspawn."""
        return self._container.pid if self._container else None

    @property
    def host(self) -> str:
        """The guest's address on its private link."""
        return self._required(self._link).guest_ip

    @property
    def port(self) -> int:
        """sshd's port in the guest."""
        return SSH_PORT

    @property
    def user(self) -> str:
        """Cloud-provisioned login user: key authentication, passwordless sudo."""
        return self.image.login_user

    @property
    def key_path(self) -> Path:
        """Private key that logs in as `user`."""
        return self.image.credentials.client_key

    @property
    def builder_user(self) -> str:
        """Hand-made user: password authentication, sudo asks for the password."""
        return self.image.builder_user

    @property
    def builder_password(self) -> str:
        """`builder_user`'s password."""
        return self.image.builder_password()

    @property
    def known_hosts_path(self) -> Path:
        """known_hosts naming `host` with the image's host keys (this target's own file)."""
        return self._required(self._workdir) / "known_hosts"

    @property
    def root(self) -> Path:
        """The guest's root tree (overlay merged dir); stays readable after the guest stops."""
        return self._required(self._workdir) / "merged"

    @property
    def upper(self) -> Path:
        """Overlay upper dir: exactly what the target changed (deletions are 0/0 char devices)."""
        return self._required(self._workdir) / "upper"

    @property
    def console_log(self) -> Path:
        """The guest's console output."""
        return self._required(self._workdir) / "console.log"

    def guest_path(self, path: str | PurePosixPath) -> Path:
        """Host path of guest `path`, symlinks resolved inside the guest (see guestpath.py)."""
        return guest_path(self.root, path)

    def ssh_command(self, *remote: str) -> list[str]:
        """OpenSSH client argv running `remote` as `user`, checking the host key strictly."""
        return strict_ssh_argv(
            key=self.key_path,
            port=self.port,
            known_hosts=self.known_hosts_path,
            login=f"{self.user}@{self.host}",
            remote=remote,
        )

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Mount, run `prepare`, link, boot, and wait until SSH and systemd are ready."""
        if self._workdir is not None:
            raise RuntimeError("an NspawnTarget starts once; make a new one")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def is_running(self) -> bool:
        """True while the container is up."""
        return self._container is not None and self._container.is_running()

    def wait_stopped(self, timeout: float) -> bool:
        """Wait up to `timeout` s; True iff the guest shut itself down (nspawn exited alone)."""
        container = self._container
        return container is not None and container.wait(timeout) and container.stopped_by_itself

    @property
    def exit_code(self) -> int | None:
        """systemd-nspawn's exit code once it exited: 0 after a guest poweroff."""
        return self._container.returncode if self._container else None

    def stop(self) -> None:
        """Stop the container if it still runs (SIGTERM, then SIGKILL); the root stays mounted."""
        if self._container is not None:
            self._container.stop()

    def close(self) -> None:
        """Stop the container, delete the link, unmount the overlay, remove the temp dir."""
        self._teardown.close()

    def console_tail(self, lines: int = 40) -> str:
        """The last lines of the guest's console."""
        return self._container.console_tail(lines) if self._container else "(not started)"

    # -- internals ----------------------------------------------------------------------

    def _start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="imageprep-target-", dir=self._workdir_parent))
        self._teardown.callback(remove_tree, self._workdir)
        for layer in (self.upper, self._workdir / "work", self.root):
            layer.mkdir()
        mount_overlay(self.image.lower, self.upper, self._workdir / "work", self.root)
        self._teardown.callback(unmount, self.root)
        if self._prepare is not None:
            self._prepare(self.root)
        self._link = self._teardown.enter_context(private_link())
        self.known_hosts_path.write_text(
            "".join(f"{self.host} {key}\n" for key in self.image.host_public_keys())
        )
        self._container = NspawnProcess(
            self.root,
            machine=self.name,
            console_log=self.console_log,
            network=[f"--network-namespace-path={self._link.netns_path}"],
            env=dict(self.image.spec.nspawn_env),
        )
        launched = time.monotonic()
        self._container.start()
        self._teardown.callback(self._container.stop)
        self._wait_until_ready(launched + self._boot_timeout)
        self.ready_after = time.monotonic() - launched

    def _wait_until_ready(self, deadline: float) -> None:
        last_error = ""
        while time.monotonic() < deadline:
            if not self.is_running():
                console = self.console_tail()
                raise TargetNotReady(
                    f"systemd-nspawn exited ({self.exit_code}) during boot:\n{console}"
                    f"{boot_failure_hint(console)}"
                )
            probe = self._probe(deadline - time.monotonic())
            if probe is None or probe.returncode == 255:  # ssh itself failed: not up yet
                last_error = probe.stderr.strip() if probe else "ssh probe timed out"
                time.sleep(_PROBE_INTERVAL_SECONDS)
                continue
            state = probe.stdout.strip()
            if state == "running":
                return
            failed = self._probe(10, "systemctl", "--failed", "--no-legend")
            failed_units = failed.stdout if failed else "?"
            console = self.console_tail()
            raise TargetNotReady(
                f"{self.name} booted {state!r}, not 'running'; failed units:\n"
                f"{failed_units}\nconsole:\n{console}{boot_failure_hint(failed_units + console)}"
            )
        raise TargetNotReady(
            f"{self.name} not ready after {self._boot_timeout}s (last ssh error: {last_error})\n"
            f"console:\n{self.console_tail()}"
        )

    def _probe(self, timeout: float, *remote: str) -> subprocess.CompletedProcess[str] | None:
        # Readiness must not depend on the host key: a `prepare` hook may replace the keys
        # on purpose to test host-key mismatch. Nothing but this host can answer on the link.
        argv = [
            "ssh",
            "-F",
            "none",
            "-i",
            str(self.key_path),
            "-p",
            str(self.port),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=2",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            f"{self.user}@{self.host}",
            *(remote or ("systemctl", "is-system-running", "--wait")),
        ]
        try:
            # stdin from /dev/null: ssh would otherwise forward the caller's stdin to the guest.
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

    @staticmethod
    def _required(value: _T | None) -> _T:
        if value is None:
            raise RuntimeError("the target has not been started")
        return value
