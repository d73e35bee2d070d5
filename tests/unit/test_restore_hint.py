"""The archive restore hint is one ssh command whatever the target's user and host hold."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from agent.backups.archive import ArchiveProvider
from agent.backups.base import BackupContext
from agent.targets import parse_target
from tests.local_executor import LocalShellExecutor

# URL-encoded users that would run a command if the hint pasted them unquoted.
HOSTILE_USERS = [
    "x%20-oProxyCommand%3Dtouch%20MARKER",
    "a%24(touch%20MARKER)",
    "a%60touch%20MARKER%60",
    "a%22%3B%20touch%20MARKER%3B%20%22",
    "a'%3B%20touch%20MARKER%3B%20'",
]


def _hint(tmp_path: Path, url: str) -> tuple[str, Path]:
    files = tmp_path / "files"
    (files / "etc").mkdir(parents=True)
    (files / "etc" / "hostname").write_text("golden\n")
    context = BackupContext(
        run_id="r1", target=parse_target(url), paths=(str(files / "etc"),), run_dir=tmp_path
    )
    record = ArchiveProvider(tmp_path / "b").take(LocalShellExecutor(), context)
    return record.restore_hint, Path(record.reference)


def _paste(tmp_path: Path, hint: str) -> list[str]:
    """Run the hint in bash as a user pasting it would, with a recording `ssh` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "ssh-argv"
    (bin_dir / "ssh").write_text(
        f'#!/bin/sh\nprintf "%s\\0" "$@" > {shlex.quote(str(argv_file))}\ncat > /dev/null\n'
    )
    (bin_dir / "ssh").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", hint], cwd=tmp_path, env=env, check=True, timeout=30)
    return argv_file.read_text().split("\0")[:-1]


@pytest.mark.parametrize("user", HOSTILE_USERS)
def test_pasted_hint_runs_only_ssh(tmp_path: Path, user: str) -> None:
    """Pasting the hint runs ssh with the user as one word and nothing else."""
    hint, _archive = _hint(tmp_path, f"ssh://{user}@vm.example:2222")
    argv = _paste(tmp_path, hint)
    assert not (tmp_path / "MARKER").exists()
    target = parse_target(f"ssh://{user}@vm.example:2222")
    assert argv[:3] == ["-p", "2222", f"{target.user}@vm.example"]
    assert len(argv) == 4
    remote = shlex.split(argv[3])
    assert remote[:4] == ["sudo", "tar", "-xzpf", "-"]
    assert remote[-2:] == ["-C", "/"]


def test_hint_feeds_the_archive_to_ssh(tmp_path: Path) -> None:
    """The hint redirects the archive itself into ssh's stdin."""
    hint, archive = _hint(tmp_path, "ssh://azureuser@vm.example:2222")
    assert hint.startswith("ssh -p 2222 azureuser@vm.example 'sudo tar -xzpf - ")
    assert f"< {archive}" in hint
    _paste(tmp_path, hint)


@pytest.mark.parametrize(
    "url", ["ssh://-oProxyCommand%3Dx@vm", "ssh://u@-oProxyCommand=x", "winrm+https://-u@h"]
)
def test_user_or_host_starting_with_a_dash_is_refused(url: str) -> None:
    """A target user or host that begins with '-' would read as an option: exit 2."""
    from agent.errors import UsageError

    with pytest.raises(UsageError, match="begins with '-'"):
        parse_target(url)


def test_dash_user_is_exit_2_on_the_command_line() -> None:
    """check --target with a user beginning with '-' is exit 2 with one line."""
    from click.testing import CliRunner

    from agent.cli import main

    result = CliRunner().invoke(
        main, ["check", "--target", "ssh://-oProxyCommand%3Dx@vm", "--log-format", "json"]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "imageprep: error: target 'ssh://-oProxyCommand%3Dx@vm': the user begins with '-'"
    ]
