"""Which steps the engine offers to send ahead, and that it keeps its word on them.

A command sent ahead runs on the target whenever its gate passes, asked for or not. The
executor here keeps the root shell's queue as ``agent.executors.ssh.rootshell`` does
(claim the head, send it again if its gate skipped it, settle the rest before anything
else) and records every command that would have run without the engine asking for it:
the engine's promise is that there is none. Commands really run, on local bash.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.engine import ResumeState
from agent.executors.base import FollowUp
from agent.records import Step
from agent.results import CommandResult, StepResult, StepStatus
from tests.local_executor import LocalShellExecutor
from tests.unit.test_engine import FixedBackup, Recorder
from tests.unit.test_engine import run_engine as engine_run


class QueueKeepingExecutor(LocalShellExecutor):
    """Runs each command on local bash and keeps the root shell's queue of commands ahead.

    ``offered``: what each run offered, as (command, [follow-up commands]).
    ``unasked``: follow-ups whose gate passed although the engine went on to something else.
    ``claimed``: how many runs found their command already sent ahead.
    """

    sends_ahead = True

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[tuple[str, list[str]]] = []
        self.unasked: list[str] = []
        self.claimed = 0
        self._queued: deque[FollowUp] = deque()
        self._previous: int | None = None  # the last request's exit code; None: skipped

    def run(self, command: str, **kwargs: Any) -> CommandResult:
        then: Sequence[FollowUp] = kwargs.pop("then", ())
        self.offered.append((command, [f.command for f in then]))
        head = self._queued[0] if self._queued else None
        if head is not None and (head.command, head.timeout) == (command, kwargs.get("timeout")):
            self._queued.popleft()
            if self._gate_passes(head):
                self.claimed += 1
            else:  # skipped on the target; the rest behind it with it, then sent again
                self._previous = None
                self._settle()
        else:
            self._settle()
        self._queued.extend(then[len(self._queued) :])
        result = super().run(command, **kwargs)
        self._previous = result.exit_code
        return result

    def end(self) -> None:
        """The run is over: what is still queued runs now if its gate passes."""
        self._settle()

    def _gate_passes(self, follow: FollowUp) -> bool:
        if self._previous is None:
            return False
        return follow.after is None or self._previous in follow.after

    def _settle(self) -> None:
        while self._queued:
            follow = self._queued.popleft()
            if self._gate_passes(follow):
                self.unasked.append(follow.command)
            self._previous = None


def step(name: str, run: str, **fields: Any) -> Step:
    fields.setdefault("become", True)
    return Step(name=name, description=f"Step {name}", run=run, **fields)


def run_engine(
    phases: dict[str, list[Step]],
    executor: QueueKeepingExecutor | LocalShellExecutor,
    *,
    resume: ResumeState | None = None,
    recorder: Recorder | None = None,
) -> list[tuple[str, StepStatus]]:
    recorder = recorder or Recorder()
    # A step expecting a power-off fails at once on local bash, which never goes away.
    engine_run(
        phases,
        backup=FixedBackup(),
        recorder=recorder,
        executor=executor,
        resume=resume,
        disconnect_timeout=0,
    )
    if isinstance(executor, QueueKeepingExecutor):
        executor.end()
    return recorder.finished


def offered_after(executor: QueueKeepingExecutor, command: str) -> list[str]:
    return next(then for sent, then in executor.offered if sent == command)


def test_a_phase_of_root_steps_is_offered_behind_its_first_step() -> None:
    executor = QueueKeepingExecutor()
    run_engine(
        {"cleanup": [step("a", "echo a"), step("b", "echo b"), step("c", "echo c")]}, executor
    )
    assert offered_after(executor, "echo a") == ["echo b", "echo c"]


def test_steps_sent_ahead_are_collected_not_run_again() -> None:
    executor = QueueKeepingExecutor()
    run_engine(
        {"cleanup": [step("a", "echo a"), step("b", "echo b"), step("c", "echo c")]}, executor
    )
    assert (executor.claimed, executor.commands) == (2, ["echo a", "echo b", "echo c"])


def test_the_gate_behind_an_aborting_step_is_its_ok_exit_codes() -> None:
    executor = QueueKeepingExecutor()
    phases = {"cleanup": [step("a", "exit 3", ok_exit_codes=[0, 3]), step("b", "true")]}
    run_engine(phases, executor)
    assert executor.claimed == 1


def test_a_failed_step_leaves_what_was_sent_behind_it_unrun() -> None:
    executor = QueueKeepingExecutor()
    finished = run_engine(
        {"cleanup": [step("a", "exit 1"), step("b", "true")], "verify": [step("v", "true")]},
        executor,
    )
    assert (finished, executor.unasked) == ([("cleanup/a", StepStatus.FAILED)], [])


def test_behind_a_continue_step_the_next_runs_whatever_its_exit_code() -> None:
    executor = QueueKeepingExecutor()
    phases = {"verify": [step("one", "exit 1", on_failure="continue"), step("two", "true")]}
    run_engine(phases, executor)
    assert (executor.claimed, executor.unasked) == (1, [])


def test_behind_an_ignored_failure_the_next_step_is_collected() -> None:
    executor = QueueKeepingExecutor()
    phases = {"cleanup": [step("optional", "exit 2", on_failure="ignore"), step("b", "true")]}
    run_engine(phases, executor)
    assert (executor.claimed, executor.unasked) == (1, [])


def test_a_retried_step_sends_its_followers_again_with_each_attempt(tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    flaky = f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]"
    executor = QueueKeepingExecutor()
    finished = run_engine(
        {"cleanup": [step("flaky", flaky, retries=2), step("b", "echo b")]}, executor
    )
    assert (finished[-1], executor.claimed, executor.unasked) == (
        ("cleanup/b", StepStatus.OK),
        1,
        [],
    )


def test_a_continue_step_with_retries_gates_on_success_only(tmp_path: Path) -> None:
    """Its follower must not run behind a failed attempt that the engine will repeat."""
    executor = QueueKeepingExecutor()
    phases = {
        "verify": [
            step("flaky", "exit 1", retries=1, on_failure="continue"),
            step("two", f"echo x >> {tmp_path / 'ran'}"),
        ]
    }
    run_engine(phases, executor)
    assert ((tmp_path / "ran").read_text(), executor.unasked) == ("x\n", [])


def test_the_offer_ends_at_the_phase() -> None:
    executor = QueueKeepingExecutor()
    run_engine({"cleanup": [step("a", "echo a")], "verify": [step("v", "echo v")]}, executor)
    assert offered_after(executor, "echo a") == []


def test_the_offer_ends_before_a_destructive_step() -> None:
    executor = QueueKeepingExecutor()
    phases = {
        "cleanup": [step("a", "echo a"), step("gone", "echo gone", destructive=True)],
    }
    run_engine(phases, executor)
    assert offered_after(executor, "echo a") == []


def test_steps_behind_a_destructive_step_wait_for_its_success() -> None:
    executor = QueueKeepingExecutor()
    phases = {"cleanup": [step("gone", "echo gone", destructive=True), step("b", "echo b")]}
    run_engine(phases, executor)
    assert (offered_after(executor, "echo gone"), executor.claimed) == (["echo b"], 1)


def test_the_offer_ends_before_a_step_that_ends_the_connection() -> None:
    executor = QueueKeepingExecutor()
    phases = {
        "cleanup": [step("a", "echo a")],
        "shutdown": [step("x", "echo x"), step("off", "true", expect_disconnect=True)],
    }
    run_engine(phases, executor)
    assert offered_after(executor, "echo x") == []


def test_the_offer_ends_before_a_step_run_as_the_login_user() -> None:
    executor = QueueKeepingExecutor()
    phases = {"cleanup": [step("a", "echo a"), step("b", "echo b", become=False)]}
    run_engine(phases, executor)
    assert offered_after(executor, "echo a") == []


def test_a_step_whose_ok_codes_include_a_timeouts_is_followed_by_nothing() -> None:
    executor = QueueKeepingExecutor()
    phases = {
        "cleanup": [step("a", "echo a", timeout=5, ok_exit_codes=[0, 124]), step("b", "true")]
    }
    run_engine(phases, executor)
    assert offered_after(executor, "echo a") == []


def test_a_step_the_plan_skips_is_passed_over() -> None:
    executor = QueueKeepingExecutor()
    phases = {
        "cleanup": [
            step("a", "echo a"),
            step("never", "echo never", when="1 == 2"),
            step("c", "true"),
        ]
    }
    run_engine(phases, executor)
    assert offered_after(executor, "echo a") == ["true"]


def test_a_resumed_runs_finished_steps_are_passed_over_and_one_in_doubt_ends_the_offer() -> None:
    executor = QueueKeepingExecutor()
    done = StepResult("cleanup", "b", StepStatus.OK)
    resume = ResumeState(completed={"cleanup/b": done}, in_doubt=frozenset({"cleanup/d"}))
    phases = {
        "cleanup": [
            step("a", "echo a"),
            step("b", "echo b"),
            step("c", "echo c"),
            step("d", "echo d", destructive=True, resume_check="true"),
        ]
    }
    run_engine(phases, executor, resume=resume)
    assert offered_after(executor, "echo a") == ["echo c"]


def test_an_executor_that_cannot_send_ahead_is_offered_nothing() -> None:
    executor = LocalShellExecutor()
    recorder = SentAheadRecorder()
    run_engine({"cleanup": [step("a", "echo a"), step("b", "echo b")]}, executor, recorder=recorder)
    assert recorder.announced == []


def test_the_observer_hears_which_steps_may_go_ahead() -> None:
    recorder = SentAheadRecorder()
    phases = {"cleanup": [step("a", "echo a"), step("b", "echo b"), step("c", "echo c")]}
    run_engine(phases, QueueKeepingExecutor(), recorder=recorder)
    assert recorder.announced == [["cleanup/b", "cleanup/c"], ["cleanup/c"]]


class SentAheadRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.announced: list[list[str]] = []

    def steps_sent_ahead(self, steps: tuple[Any, ...]) -> None:
        self.announced.append([s.key for s in steps])
