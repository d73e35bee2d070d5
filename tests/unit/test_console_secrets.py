"""What imageprep prints passes the same redaction as its logs: no password on the console."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.outcome import ExitCode
from agent.plan import PlannedStep
from agent.progress import ConsoleProgress, print_summary
from agent.records import Step
from agent.results import StepResult, StepStatus
from agent.runner import RunOutcome
from agent.secrets import REGISTRY

SECRET = "Sudo-pw+s3cr/et"  # noqa: S105  a test value

FORMS = {
    SECRET,
    json.dumps(SECRET)[1:-1],
    base64.b64encode(SECRET.encode()).decode(),
    base64.b64encode(SECRET.encode("utf-16-le")).decode(),
}


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    """The run knows SECRET, as it knows a password read from --sudo-password-env."""
    REGISTRY.add(SECRET)
    yield
    REGISTRY.clear()


def _leaks(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


def _output_with_every_form() -> str:
    return " | ".join(sorted(FORMS))


def _step() -> PlannedStep:
    spec = Step(name="leaky", description="prints what it should not", run="true", timeout=10)
    return PlannedStep(
        index=1, phase="cleanup", spec=spec, command="true", condition=True, skip_reason=None
    )


def test_progress_line_of_a_failed_step_is_redacted() -> None:
    """The text-mode progress line of a failing step shows no form of the password."""
    stream = io.StringIO()
    failed = StepResult(
        phase="cleanup",
        name="leaky",
        status=StepStatus.FAILED,
        exit_code=1,
        message=f"cleanup/leaky failed (exit 1): {_output_with_every_form()}",
    )
    ConsoleProgress(enabled=True, stream=stream).step_finished(_step(), failed)
    assert "cleanup/leaky" in stream.getvalue()
    assert _leaks(stream.getvalue()) == []


def _outcome(tmp_path: Path) -> RunOutcome:
    message = f"cleanup/leaky failed: {_output_with_every_form()}"
    return RunOutcome(
        run_id="r1",
        exit_code=ExitCode.FAILED_BEFORE_POINT_OF_NO_RETURN,
        message=message,
        run_dir=tmp_path,
        result={"status": "failed", "steps": [], "target": "ssh://u@h:22"},
    )


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_summary_is_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    """The console summary (text and JSON) shows no form of the password."""
    print_summary(_outcome(tmp_path), log_format)
    out = capsys.readouterr().out
    assert "cleanup/leaky failed" in out
    assert _leaks(out) == []


def test_one_line_error_is_redacted(tmp_path: Path) -> None:
    """The one-line error of a refused command shows no form of a known secret."""
    result = CliRunner().invoke(main, ["plan", "--profile", f"x-{SECRET}"])
    assert result.exit_code == ExitCode.USAGE
    assert "x-***" in result.output
    assert _leaks(result.output) == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://u:PASSWORD@h",
        "ftp://u:PASSWORD@h:99",
        "ftp://u:PASS@WORD@h",
        "ftp://u:PASS/WORD@h",
        "ftp://u:PASS?WORD@h",
        "winrm+http://u:PASSWORD@h",
    ],
)
def test_unknown_scheme_error_never_echoes_the_url_password(url: str) -> None:
    """--target with an unknown scheme and a password: exit 2, password not echoed."""
    result = CliRunner().invoke(main, ["check", "--target", url, "--log-format", "json"])
    assert result.exit_code == ExitCode.USAGE
    assert "unknown scheme" in result.output
    assert "PASS" not in result.output
    assert "WORD" not in result.output


def test_without_password_keeps_a_url_without_one() -> None:
    """A URL without a password is shown as given."""
    from agent.targets import without_password

    assert without_password("ssh://u@[::1]:22") == "ssh://u@[::1]:22"
