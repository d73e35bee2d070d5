"""The disposable targets themselves: reachable, isolated, customisable, gone afterwards."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.integration.conftest import TargetFactory
from tests.targets.guestpath import guest_path
from tests.targets.mounts import mount_points_under
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import TargetImage

pytestmark = pytest.mark.integration


def _ssh(target: NspawnTarget, *remote: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        target.ssh_command(*remote), capture_output=True, text=True, timeout=60, check=False
    )


def _ssh_as_builder(
    target: NspawnTarget, tmp_path: Path, remote: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    # OpenSSH reads a login password only from a terminal or an askpass program.
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\ncat '{tmp_path / 'password'}'\n")
    askpass.chmod(0o700)
    (tmp_path / "password").write_text(target.builder_password + "\n")
    argv = [
        "ssh",
        "-F",
        "none",
        "-p",
        str(target.port),
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "ConnectTimeout=5",
        "-o",
        f"UserKnownHostsFile={target.known_hosts_path}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "LogLevel=ERROR",
        f"{target.builder_user}@{target.host}",
        remote,
    ]
    env = {"PATH": "/usr/bin:/bin", "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_fresh_target_accepts_key_login_with_passwordless_sudo(target: NspawnTarget) -> None:
    """A fresh target lets azureuser in with the cached key and runs `sudo -n true`."""
    result = _ssh(target, "sudo", "-n", "true")

    assert result.returncode == 0, result.stderr


def test_builder_logs_in_with_password(target: NspawnTarget, tmp_path: Path) -> None:
    """builder logs in over SSH with its password."""
    result = _ssh_as_builder(target, tmp_path, "id -un")

    assert (result.returncode, result.stdout) == (0, "builder\n"), result.stderr


def test_builder_sudo_requires_password(target: NspawnTarget, tmp_path: Path) -> None:
    """builder's sudo refuses without the password and accepts it on stdin."""
    remote = "sudo -n true 2>/dev/null; echo without=$?; sudo -S -p '' true; echo with=$?"

    result = _ssh_as_builder(target, tmp_path, remote, stdin=target.builder_password + "\n")

    assert result.stdout.split() == ["without=1", "with=0"], result.stderr


def test_poweroff_stops_target_and_root_stays_readable(target: NspawnTarget) -> None:
    """After `sudo systemctl poweroff` nspawn exits by itself and the root is still readable."""
    _ssh(target, "sudo", "systemctl", "poweroff")  # the connection may drop: rc is moot

    assert target.wait_stopped(timeout=30)
    assert target.exit_code == 0
    assert target.guest_path("/etc/hostname").read_text() == "imageprep-golden\n"


def test_two_targets_get_different_addresses(target_factory: TargetFactory) -> None:
    """Two targets at once get different addresses, each configured on its own tgt0."""
    first, second = target_factory(), target_factory()

    assert first.host != second.host
    assert f"inet {first.host}/30" in _ssh(first, "ip", "-4", "-o", "addr", "show", "tgt0").stdout
    assert f"inet {second.host}/30" in _ssh(second, "ip", "-4", "-o", "addr", "show", "tgt0").stdout


def test_targets_booted_at_once_all_reach_running(target_image: TargetImage) -> None:
    """Three targets booting at the same time all come up `running` (no shared cgroup)."""
    targets = [NspawnTarget(target_image) for _ in range(3)]
    with ExitStack() as teardown, ThreadPoolExecutor(max_workers=len(targets)) as pool:
        for target in targets:
            teardown.callback(target.close)
        list(pool.map(NspawnTarget.start, targets))  # each raises unless `running`
        states = [_ssh(target, "systemctl", "is-system-running").stdout for target in targets]

    assert states == ["running\n"] * 3


def test_prepare_hook_change_is_visible_inside(target_factory: TargetFactory) -> None:
    """A file the prepare hook writes before boot is there when the guest runs."""

    def add_marker(root: Path) -> None:
        guest_path(root, "/etc/imageprep-marker").write_text("from prepare\n")

    target = target_factory(prepare=add_marker)

    assert _ssh(target, "cat", "/etc/imageprep-marker").stdout == "from prepare\n"


def test_replaced_host_key_is_rejected(target_factory: TargetFactory) -> None:
    """A target whose host keys were regenerated fails strict host-key checking."""

    def replace_host_keys(root: Path) -> None:
        for key in guest_path(root, "/etc/ssh").glob("ssh_host_*"):
            key.unlink()
        subprocess.run(["ssh-keygen", "-A", "-f", str(root)], check=True, capture_output=True)

    target = target_factory(prepare=replace_host_keys)
    result = _ssh(target, "true")

    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_teardown_leaves_nothing_behind(target_image: TargetImage) -> None:
    """Closing a target removes its process, mount, namespace, veth and temporary directory."""
    with NspawnTarget(target_image) as target:
        workdir, link, pid = target.root.parent, target.link, target.pid

    assert not Path(f"/proc/{pid}").exists()
    assert not mount_points_under(workdir)
    assert not link.in_use()
    assert not workdir.exists()


def test_guest_path_keeps_absolute_symlinks_inside_root(tmp_path: Path) -> None:
    """guest_path resolves an absolute symlink in the guest tree under root, not on the host."""
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to("/run")

    assert guest_path(tmp_path, "/var/run/sshd.pid") == tmp_path / "run" / "sshd.pid"
