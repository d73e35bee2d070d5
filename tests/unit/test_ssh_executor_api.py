"""SshExecutor's public surface without a network: protocol, options, lifecycle guards."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import Disconnected, UsageError
from agent.executors.base import Executor
from agent.executors.ssh import SshExecutor, SshOptions
from agent.secrets import Secret
from agent.targets import parse_target

TARGET = parse_target("ssh://azureuser@192.0.2.10:2222")


def test_implements_the_executor_protocol() -> None:
    """SshExecutor satisfies agent.executors.base.Executor and names its target."""
    executor = SshExecutor(TARGET, SshOptions())
    assert isinstance(executor, Executor)
    assert executor.description == "ssh://azureuser@192.0.2.10:2222"


def test_options_repr_hides_secrets() -> None:
    """Passwords in SshOptions never show in its repr."""
    options = SshOptions(
        password=Secret("hunter2-login", source="env:PW"),
        sudo_password=Secret("hunter2-sudo", source="file:/run/pw"),
    )
    assert "hunter2" not in repr(options)


def test_unconnected_executor_refuses_commands_and_closes_quietly() -> None:
    """Before connect(): run raises Disconnected, close() is a no-op, nothing is connected."""
    executor = SshExecutor(TARGET, SshOptions())
    with pytest.raises(Disconnected, match="not connected"):
        executor.run("true")
    executor.close()
    assert (executor.is_connected(), executor.wait_disconnected(0)) == (False, True)


def test_unreadable_identity_fails_before_connecting(tmp_path: Path) -> None:
    """A missing identity file is a usage error naming --identity, without network I/O."""
    missing = tmp_path / "id_ed25519"
    with pytest.raises(UsageError, match=f"--identity {missing}: cannot read it"):
        SshExecutor(TARGET, SshOptions(identity=missing)).connect()


def test_garbage_identity_is_a_usage_error(tmp_path: Path) -> None:
    """A file that is not a private key is a usage error naming --identity."""
    garbage = tmp_path / "id_rsa"
    garbage.write_text("not a key\n")
    with pytest.raises(UsageError, match=f"--identity {garbage} is not a usable"):
        SshExecutor(TARGET, SshOptions(identity=garbage)).connect()


def test_non_positive_timeout_is_a_programming_error() -> None:
    """timeout=0 would mean 'no limit' to timeout(1); it is refused outright."""
    with pytest.raises(ValueError, match="timeout must be positive"):
        SshExecutor(TARGET, SshOptions()).run("true", timeout=0)
