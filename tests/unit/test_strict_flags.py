"""Flags that would be silently wrong are exit 2 with one line naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.cli import main
from agent.outcome import ExitCode


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--log-format", "json"])


def _one_line(result: Result) -> str:
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-1", "x"])
def test_port_outside_1_to_65535_is_refused(port: str) -> None:
    """A port outside 1-65535 (0 included: it used to become 22) is exit 2."""
    line = _one_line(_invoke("check", "--target", f"ssh://u@127.0.0.1:{port}"))
    assert "port" in line


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--identity", "key"),
        ("--known-hosts", "known_hosts"),
        ("--host-key-policy", "accept-new"),
        ("--host-key-policy", "strict"),  # the default value, but given: still refused
        ("--sudo-password-env", "IMAGEPREP_TEST_SUDO"),
        ("--sudo-password-file", "sudo.txt"),
    ],
)
@pytest.mark.parametrize("command", ["check", "plan"])
def test_ssh_only_option_with_winrm_target_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str, command: str
) -> None:
    """An SSH-only option with a winrm+https:// target is exit 2 naming the option."""
    path = tmp_path / value
    path.write_text("x\n")
    monkeypatch.setenv("IMAGEPREP_TEST_SUDO", "x")
    arg = value if option in ("--host-key-policy", "--sudo-password-env") else str(path)
    line = _one_line(
        _invoke(
            command,
            "--target",
            "winrm+https://Administrator@127.0.0.1:1",
            option,
            arg,
            "--password-env",
            "IMAGEPREP_TEST_SUDO",
        )
    )
    assert line == f"imageprep: error: {option} is for ssh:// targets, not winrm+https://"


@pytest.mark.parametrize(
    ("option", "arg"),
    [
        ("--winrm-transport", "ntlm"),  # the default value, but given: still refused
        ("--insecure-skip-verify", None),
        ("--allow-unencrypted", None),
        ("--ca-cert", "ca.pem"),
    ],
)
def test_winrm_only_option_with_ssh_target_is_refused(
    tmp_path: Path, option: str, arg: str | None
) -> None:
    """A WinRM-only option with an ssh:// target is exit 2 naming the option."""
    extra = [option] if arg is None else [option, str(tmp_path / arg) if "." in arg else arg]
    line = _one_line(_invoke("check", "--target", "ssh://u@127.0.0.1:1", *extra))
    assert line.startswith(f"imageprep: error: {option} is for winrm://")


def test_only_and_skip_of_the_same_step_is_refused() -> None:
    """--only X --skip X is exit 2 naming X (before, --skip won silently)."""
    line = _one_line(
        _invoke(
            "plan", "--profile", "debian", "--only", "waagent-present", "--skip", "waagent-present"
        )
    )
    assert "waagent-present" in line


def test_only_and_skip_of_one_step_by_two_names_is_refused() -> None:
    """--only NAME with --skip PHASE/NAME (the same step) is exit 2 naming it."""
    line = _one_line(
        _invoke(
            "plan",
            "--profile",
            "debian",
            "--only",
            "waagent-present",
            "--skip",
            "preflight/waagent-present",
        )
    )
    assert "preflight/waagent-present" in line


def test_only_and_skip_of_different_steps_still_work() -> None:
    """--only and --skip naming different steps are accepted."""
    result = _invoke(
        "plan", "--profile", "debian", "--only", "waagent-present", "--skip", "machine-id-empty"
    )
    assert result.exit_code == 0, result.output
