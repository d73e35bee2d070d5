"""A target that stops answering while its facts are read: exit 4 naming the host."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent import errors, facts, runner
from agent.cli import main
from agent.outcome import ExitCode, exit_code_for_error
from agent.runner import RunRequest, execute
from agent.targets import parse_target
from tests.local_executor import LocalShellExecutor

TARGET = "ssh://azureuser@vm.example:22"


class HangingTarget(LocalShellExecutor):
    """Real bash whose `uname` never returns, named like the SSH executor names a target."""

    def __init__(self, stubs: Path) -> None:
        stubs.mkdir(exist_ok=True)
        (stubs / "uname").write_text("#!/bin/sh\nexec sleep 60\n")
        (stubs / "uname").chmod(0o755)
        super().__init__(path_prefix=stubs)

    @property
    def description(self) -> str:
        return parse_target(TARGET).display


@pytest.fixture
def hanging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every executor is a HangingTarget; facts time out after 0.5 s instead of 60 s."""

    def create(*_args: Any, **_kwargs: Any) -> HangingTarget:
        return HangingTarget(tmp_path / "stubs")

    quick = functools.partial(facts.gather_facts, timeout=0.5)
    monkeypatch.setattr(runner, "create_executor", create)
    monkeypatch.setattr("agent.executors.create_executor", create)
    monkeypatch.setattr(runner, "gather_facts", quick)
    monkeypatch.setattr(facts, "gather_facts", quick)  # planning imports it when used


@pytest.mark.usefixtures("hanging")
def test_run_is_exit_4_naming_the_host(tmp_path: Path) -> None:
    """run/check: a facts time-out is exit 4 (was 1, "a bug") and names the host."""
    outcome = execute(
        RunRequest(target=parse_target(TARGET), playbook="check", run_dir=tmp_path / "run")
    )
    assert outcome.exit_code is ExitCode.CONNECTION_FAILED
    assert "vm.example" in outcome.message
    assert "reading the facts timed out after 0.5 s" in outcome.message
    report = json.loads((tmp_path / "run" / "result.json").read_text())
    assert (report["status"], report["exit_code"]) == ("failed", 4)


@pytest.mark.usefixtures("hanging")
def test_plan_is_exit_4_with_one_line() -> None:
    """plan --target: a facts time-out is one line and exit 4."""
    result = CliRunner().invoke(main, ["plan", "--target", TARGET, "--log-format", "json"])
    assert result.exit_code == ExitCode.CONNECTION_FAILED, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "vm.example" in lines[0]
    assert "Traceback" not in result.output


def test_every_command_timeout_outside_a_step_is_exit_4() -> None:
    """The exit code table maps CommandTimeout to 4 wherever it is caught."""
    assert exit_code_for_error(errors.CommandTimeout("x")) is ExitCode.CONNECTION_FAILED


def test_interrupt_has_one_path() -> None:
    """Ctrl-C and SIGTERM arrive as KeyboardInterrupt (exit 130); no second error class."""
    assert exit_code_for_error(KeyboardInterrupt()) is ExitCode.INTERRUPTED
    assert not hasattr(errors, "Interrupted")
