"""--jump parsing and --ssh-config precedence (the command line wins, as with ssh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import UsageError
from agent.executors.ssh.options import JumpHost
from agent.sshconfig import apply_ssh_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("admin@bastion", JumpHost("admin", "bastion", 22)),
        ("admin@bastion:2222", JumpHost("admin", "bastion", 2222)),
        ("bastion", JumpHost(None, "bastion", 22)),
        ("ops@[fd00::1]:22", JumpHost("ops", "fd00::1", 22)),
    ],
)
def test_jump_host_parses(text: str, expected: JumpHost) -> None:
    """USER@HOST[:PORT], a bare host and a bracketed IPv6 address parse."""
    assert JumpHost.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "-oProxyCommand=x", "a@b:0", "a@b:70000", "a:pw@b", "a@b/path", "a b@c"]
)
def test_bad_jump_host_is_usage_error(text: str) -> None:
    """Options in disguise, bad ports, passwords and paths are refused."""
    with pytest.raises(UsageError, match="--jump"):
        JumpHost.parse(text)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(
        "Host golden\n"
        "    HostName 192.0.2.10\n"
        "    User fromconfig\n"
        "    Port 2200\n"
        "    IdentityFile ~/keys/golden\n"
        "    ProxyJump hop1@b1,hop2@b2:2222\n"
        "Host direct\n"
        "    ProxyJump none\n"
    )
    return path


def test_config_fills_what_the_url_leaves_out(tmp_path: Path) -> None:
    """HostName, User, Port, IdentityFile and ProxyJump come from the matching Host block."""
    choice = apply_ssh_config(_config(tmp_path), "ssh://golden", identity=None, jumps=())
    assert choice.target.display == "ssh://fromconfig@192.0.2.10:2200"
    assert choice.identity == Path("~/keys/golden").expanduser()
    assert choice.jumps == ("hop1@b1", "hop2@b2:2222")


def test_command_line_wins_over_config(tmp_path: Path) -> None:
    """A user and port in the URL, --identity and --jump beat the config file."""
    choice = apply_ssh_config(
        _config(tmp_path), "ssh://me@golden:22", identity=Path("k"), jumps=("j@x",)
    )
    assert choice.target.display == "ssh://me@192.0.2.10:22"
    assert (choice.identity, choice.jumps) == (Path("k"), ("j@x",))


def test_proxyjump_none_means_direct(tmp_path: Path) -> None:
    """ProxyJump none (OpenSSH's way to switch it off) gives no jump host."""
    choice = apply_ssh_config(_config(tmp_path), "ssh://u@direct", identity=None, jumps=())
    assert choice.jumps == ()
