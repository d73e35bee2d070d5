"""The console a person reads, on a terminal or in a CI log: step lines with [n/N] and
elapsed time, a heartbeat while a step runs, -v output, colour only where it belongs."""

from __future__ import annotations

import io
import time

import pytest

from agent.plan import Plan, build_plan
from agent.progress import ConsoleProgress, colour_wanted, elapsed_text
from agent.records import Step
from agent.results import StepResult, StepStatus


def _plan(count: int = 3) -> Plan:
    steps = [Step(name=f"s{i}", description=f"Step {i}", run="true") for i in range(count)]
    return build_plan(
        profile_id="t",
        profile_file="t.yaml",
        profile_phases={"cleanup": steps},
        profile_vars={},
        backup_paths=(),
        playbook_name="t",
        playbook_file="t.yaml",
        playbook_phases=("cleanup",),
        requires_backup=False,
        facts={},
    )


def _console(**kwargs: object) -> tuple[ConsoleProgress, io.StringIO, Plan]:
    stream = io.StringIO()
    progress = ConsoleProgress(enabled=True, stream=stream, **kwargs)  # type: ignore[arg-type]
    plan = _plan()
    progress.plan_ready(plan)
    return progress, stream, plan


def _ok(duration: float = 0.5) -> StepResult:
    return StepResult("cleanup", "s1", status=StepStatus.OK, duration=duration)


def test_step_start_line_counts_steps() -> None:
    """A step's start is one line `[n/N] phase/step ...`."""
    progress, stream, plan = _console(heartbeat=0)
    progress.step_started(plan.steps[1])
    assert stream.getvalue() == "[2/3] cleanup/s1 ...\n"


def test_step_end_line_shows_status_and_elapsed_time() -> None:
    """A step's end line has its counter, status and elapsed time."""
    progress, stream, plan = _console(heartbeat=0, colour=False)
    progress.step_finished(plan.steps[1], _ok(72.5))
    assert stream.getvalue() == "[2/3] ok      cleanup/s1  1m12s\n"


def test_heartbeat_while_a_step_runs() -> None:
    """A step running past the heartbeat interval gets a `still running` line."""
    progress, stream, plan = _console(heartbeat=0.05)
    progress.step_started(plan.steps[0])
    time.sleep(0.3)
    progress.step_finished(plan.steps[0], _ok())
    progress.close()
    assert "[1/3] cleanup/s0 still running (" in stream.getvalue()


def test_no_heartbeat_after_the_step_ended() -> None:
    """Once the step ended, the heartbeat says nothing more."""
    progress, stream, plan = _console(heartbeat=0.05)
    progress.step_started(plan.steps[0])
    progress.step_finished(plan.steps[0], _ok())
    time.sleep(0.3)
    progress.close()
    assert "still running" not in stream.getvalue()


def test_verbose_prints_step_output() -> None:
    """-v shows each output line of the running step, stderr marked apart."""
    progress, stream, plan = _console(heartbeat=0, verbose=True)
    progress.step_output(plan.steps[0], "stdout", "hello")
    progress.step_output(plan.steps[0], "stderr", "warning")
    assert stream.getvalue() == "    | hello\n    ! warning\n"


def test_output_hidden_without_verbose() -> None:
    """Without -v, step output stays in the run log only."""
    progress, stream, plan = _console(heartbeat=0)
    progress.step_output(plan.steps[0], "stdout", "hello")
    assert stream.getvalue() == ""


def test_disabled_console_prints_nothing() -> None:
    """-q (or --log-format json): no step lines at all."""
    stream = io.StringIO()
    progress = ConsoleProgress(enabled=False, stream=stream, heartbeat=0.01)
    progress.plan_ready(_plan())
    progress.step_started(_plan().steps[0])
    time.sleep(0.05)
    progress.close()
    assert stream.getvalue() == ""


def test_colour_marks_the_status() -> None:
    """With colour, the status mark carries an ANSI colour."""
    progress, stream, plan = _console(heartbeat=0, colour=True)
    progress.step_finished(plan.steps[0], _ok())
    assert "\x1b[32mok" in stream.getvalue()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal gets colour by default."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_wanted(_Terminal())


def test_no_colour_when_no_color_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR switches colour off even on a terminal."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_wanted(_Terminal())


def test_no_colour_in_a_ci_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipe or file (a CI log) gets no colour codes."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert not colour_wanted(io.StringIO())


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.123, "0.12s"), (12.34, "12.3s"), (245, "4m05s"), (3720, "1h02m")],
)
def test_elapsed_time_is_short(seconds: float, text: str) -> None:
    """Elapsed times read at a glance, from fractions of a second to hours."""
    assert elapsed_text(seconds) == text
