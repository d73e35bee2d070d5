"""Authentication paths of a whole run: an SSH agent, and a key that is not accepted."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli_run import imageprep
from tests.integration.conftest import TargetFactory

pytestmark = pytest.mark.integration

CONNECTION_FAILED = 4


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[Path]:
    """A private ssh-agent for one test; its socket path."""
    socket = tmp_path / "agent.sock"
    started = subprocess.run(
        ["ssh-agent", "-a", str(socket), "-s"], capture_output=True, text=True, check=True
    )
    pid = next(
        line.split("=")[1].split(";")[0]
        for line in started.stdout.splitlines()
        if line.startswith("SSH_AGENT_PID=")
    )
    try:
        yield socket
    finally:
        subprocess.run(["kill", pid], check=False)


def test_key_from_ssh_agent(target_factory: TargetFactory, ssh_agent: Path, tmp_path: Path) -> None:
    """With no --identity and no password, the key held by the SSH agent logs in."""
    target = target_factory()
    subprocess.run(
        ["ssh-add", "-q", str(target.key_path)],
        env={"SSH_AUTH_SOCK": str(ssh_agent)},
        check=True,
    )
    home = tmp_path / "home"  # no ~/.ssh/id_* to fall back on
    home.mkdir()
    result = imageprep(
        "check",
        "--target",
        f"ssh://{target.user}@{target.host}:{target.port}",
        "--known-hosts",
        str(target.known_hosts_path),
        run_dir=tmp_path / "r",
        env={"SSH_AUTH_SOCK": str(ssh_agent), "HOME": str(home)},
    )
    assert result.exit_code == 0, result.stderr[-2000:]


def test_unknown_key_is_refused(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A key the target does not know is an authentication failure, exit 4."""
    target = target_factory()
    other_key = tmp_path / "other_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True
    )
    home = tmp_path / "home"
    home.mkdir()
    result = imageprep(
        "check",
        "--target",
        f"ssh://{target.user}@{target.host}:{target.port}",
        "--identity",
        str(other_key),
        "--known-hosts",
        str(target.known_hosts_path),
        run_dir=tmp_path / "r",
        env={"HOME": str(home), "SSH_AUTH_SOCK": ""},
    )
    assert result.exit_code == CONNECTION_FAILED
    assert "authentication" in result.report["message"].lower()
