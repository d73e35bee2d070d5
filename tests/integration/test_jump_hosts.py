"""SSH through jump hosts: a bastion target that sits in two network namespaces reaches a
target this controller cannot reach directly; `--jump` and `--ssh-config` get there.

The bastion is an ordinary test target. After the inner target booted, the host end of the
inner target's private link is moved into the bastion's namespace: from then on only the
bastion can reach the inner target, which this test checks before relying on it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cli_run import CliResult, imageprep
from tests.integration.conftest import TargetFactory
from tests.targets.nspawn import NspawnTarget

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Behind:
    """An inner target reachable only through the bastion, and a known_hosts for both."""

    bastion: NspawnTarget
    inner: NspawnTarget
    known_hosts: Path


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def behind_bastion(target_factory: TargetFactory, tmp_path: Path) -> Behind:
    bastion = target_factory()
    inner = target_factory()
    host_end = inner.link.host_interface
    _ip("link", "set", host_end, "netns", bastion.link.netns)
    _ip("-n", bastion.link.netns, "addr", "add", f"{inner.link.host_ip}/30", "dev", host_end)
    _ip("-n", bastion.link.netns, "link", "set", host_end, "up")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        bastion.known_hosts_path.read_text() + inner.known_hosts_path.read_text()
    )
    return Behind(bastion, inner, known_hosts)


def _check(
    behind: Behind, run_dir: Path, *extra: str, known_hosts: Path | None = None
) -> CliResult:
    inner = behind.inner
    return imageprep(
        "check",
        "--target",
        f"ssh://{inner.user}@{inner.host}:{inner.port}",
        "--identity",
        str(inner.key_path),
        "--known-hosts",
        str(known_hosts or behind.known_hosts),
        "--connect-timeout",
        "5",
        *extra,
        run_dir=run_dir,
        timeout=120,
    )


def _jump(behind: Behind) -> str:
    bastion = behind.bastion
    return f"{bastion.user}@{bastion.host}:{bastion.port}"


def test_inner_target_is_unreachable_directly(behind_bastion: Behind, tmp_path: Path) -> None:
    """Without a jump host the controller cannot reach the inner target (exit 4)."""
    result = _check(behind_bastion, tmp_path / "run")
    assert result.exit_code == 4, result.stderr[-2000:]


def test_check_through_jump_host(behind_bastion: Behind, tmp_path: Path) -> None:
    """`check --jump USER@BASTION` reaches the inner target and passes its preflight."""
    result = _check(behind_bastion, tmp_path / "run", "--jump", _jump(behind_bastion))
    assert result.exit_code == 0, result.stderr[-3000:]
    assert result.report["facts"]["os"]["id"] == "debian"


def test_changed_jump_host_key_names_the_jump_host(behind_bastion: Behind, tmp_path: Path) -> None:
    """A jump host whose key changed is exit 4 naming the jump host, not the target."""
    bastion = behind_bastion.bastion
    foreign = tmp_path / "foreign"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(foreign)], check=True)
    key_type, key_body, *_ = foreign.with_suffix(".pub").read_text().split()
    known_hosts = tmp_path / "known_hosts_changed"
    known_hosts.write_text(
        f"{bastion.host} {key_type} {key_body}\n"
        + behind_bastion.inner.known_hosts_path.read_text()
    )
    result = _check(
        behind_bastion,
        tmp_path / "run",
        "--jump",
        _jump(behind_bastion),
        known_hosts=known_hosts,
    )
    assert result.exit_code == 4
    assert f"jump host {bastion.host}:{bastion.port}" in result.report["message"]
    assert "CHANGED" in result.report["message"]


def test_refusing_jump_host_is_named(behind_bastion: Behind, tmp_path: Path) -> None:
    """A jump host that refuses the connection is exit 4 naming the jump host."""
    bastion = behind_bastion.bastion
    result = _check(behind_bastion, tmp_path / "run", "--jump", f"{bastion.user}@{bastion.host}:2")
    assert result.exit_code == 4
    assert f"jump host {bastion.host}:2" in result.report["message"]


def test_ssh_config_supplies_host_user_key_and_proxyjump(
    behind_bastion: Behind, tmp_path: Path
) -> None:
    """--ssh-config maps an alias to HostName, User, IdentityFile and ProxyJump."""
    bastion, inner = behind_bastion.bastion, behind_bastion.inner
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host golden\n"
        f"    HostName {inner.host}\n"
        f"    User {inner.user}\n"
        f"    Port {inner.port}\n"
        f"    IdentityFile {inner.key_path}\n"
        f"    ProxyJump {bastion.user}@{bastion.host}:{bastion.port}\n"
    )
    result = imageprep(
        "check",
        "--target",
        "ssh://golden",
        "--ssh-config",
        str(config),
        "--known-hosts",
        str(behind_bastion.known_hosts),
        run_dir=tmp_path / "run",
        timeout=120,
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    assert result.report["target"] == f"ssh://{inner.user}@{inner.host}:{inner.port}"
