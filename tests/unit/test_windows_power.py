"""confirm_power_off: a listener that comes back is a reboot; the platform seam wins."""

from __future__ import annotations

from agent.engine import EngineResult
from agent.outcome import ExitCode
from agent.windows_power import confirm_power_off

OFF = EngineResult(
    exit_code=ExitCode.OK,
    message="ok",
    steps=(),
    backup=None,
    point_of_no_return_reached=True,
    powered_off=True,
)


class Probe:
    """Answers from a script of booleans; the last one repeats."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)

    def listener_answers(self) -> bool:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Platform:
    description = "the test platform"

    def __init__(self, off: bool) -> None:
        self.off = off

    def is_powered_off(self) -> bool:
        return self.off


def test_a_listener_that_stays_silent_confirms_the_power_off() -> None:
    """Silent for the whole watch: the result is unchanged."""
    assert confirm_power_off(OFF, Probe(False), watch_seconds=0.05, sleep=lambda _: None) == OFF


def test_a_listener_that_answers_again_is_a_reboot() -> None:
    """Silent, then answering: exit 6 and the message says the VM rebooted."""
    result = confirm_power_off(
        OFF, Probe(True, False, False, True), watch_seconds=5, sleep=lambda _: None
    )
    assert result.exit_code is ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN
    assert "rebooted instead of powering off" in result.message
    assert result.powered_off is False


def test_the_platform_decides_when_given() -> None:
    """With a platform (issue 15's --platform), its answer wins over the listener."""
    assert confirm_power_off(OFF, Probe(True), platform=Platform(off=True)) == OFF
    running = confirm_power_off(OFF, Probe(False), platform=Platform(off=False))
    assert running.exit_code is ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN
    assert "the test platform reports the VM running" in running.message


def test_a_run_that_did_not_power_off_is_left_alone() -> None:
    """Nothing to confirm when the run never powered the VM off."""
    failed = EngineResult(
        exit_code=ExitCode.PREFLIGHT_FAILED,
        message="x",
        steps=(),
        backup=None,
        point_of_no_return_reached=False,
        powered_off=False,
    )
    assert confirm_power_off(failed, Probe(True), watch_seconds=5) == failed
