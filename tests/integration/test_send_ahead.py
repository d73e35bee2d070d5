"""Root commands sent ahead (``Executor.run``'s ``then``) on a real root shell over real sshd.

Each follow-up waits in the shell's stdin behind the command before it and starts the
moment that one ends, if its gate lets it; the caller's later ``run`` of it only collects
it. What is checked from outside: when a follow-up really ran, what it left on the
target, and that nothing sent ahead runs once the client let go of the shell.
"""

from __future__ import annotations

import _thread
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.errors import CommandTimeout, TransportError
from agent.executors.base import FollowUp
from agent.executors.ssh import SshExecutor
from agent.executors.ssh.channel import receive
from agent.executors.ssh.rootshell import AHEAD_MAX_REQUESTS, RAW_SCRIPT_MAX
from tests.integration.conftest import TargetFactory
from tests.integration.test_ssh_executor import key_executor
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import TargetImage


@pytest.fixture(scope="module")
def target(target_image: TargetImage) -> Iterator[NspawnTarget]:
    """One target for these tests; each keeps what it leaves under its own /run/ahead-* name."""
    with NspawnTarget(target_image) as shared:
        yield shared


@pytest.fixture
def marker() -> str:
    """A file name on the target's /run that only this test writes."""
    return f"/run/ahead-{secrets.token_hex(6)}"


def follow(
    command: str, after: tuple[int, ...] | None = (0,), timeout: float | None = 30
) -> FollowUp:
    return FollowUp(command, timeout, after)


def lines_in(ex: SshExecutor, path: str) -> list[str]:
    return ex.run(f"cat {path} 2>/dev/null || true", become=True, timeout=30).stdout.splitlines()


def test_a_follow_up_runs_before_it_is_asked_for(target: NspawnTarget) -> None:
    """It starts as the command before it ends, not when the caller gets round to it."""
    then = (follow("date +%s.%N"),)
    with key_executor(target) as ex:
        ex.run("true", become=True, timeout=30, then=then)
        time.sleep(0.5)
        asked_at = time.time()
        started_at = float(ex.run("date +%s.%N", become=True, timeout=30).stdout)
    assert asked_at - started_at > 0.4


def test_follow_ups_come_back_exact(target: NspawnTarget) -> None:
    """Output of both streams and exit codes, as if each had been sent on its own."""
    scripts = ("printf 'one\\n'; exit 3", "printf two >&2", "printf 'th\\nree'; exit 5")
    then = (follow(scripts[0]), follow(scripts[1], after=(3,)), follow(scripts[2], after=None))
    with key_executor(target) as ex:
        head = ex.run("echo head", become=True, timeout=30, then=then)
        results = [ex.run(s, become=True, timeout=30) for s in scripts]
    assert [(r.exit_code, r.stdout, r.stderr) for r in (head, *results)] == [
        (0, "head\n", ""),
        (3, "one\n", ""),
        (0, "", "two"),
        (5, "th\nree", ""),
    ]


def test_a_long_follow_up_runs_as_written(target: NspawnTarget) -> None:
    """A script over RAW_SCRIPT_MAX goes ahead in base64 through the shell's file."""
    long_script = "#" * RAW_SCRIPT_MAX + "\nprintf 'long é'"
    with key_executor(target) as ex:
        ex.run("true", become=True, timeout=30, then=(follow(long_script),))
        result = ex.run(long_script, become=True, timeout=30)
    assert (result.exit_code, result.stdout) == (0, "long é")


def test_more_follow_ups_than_the_queue_holds_all_come_back(target: NspawnTarget) -> None:
    scripts = [f"echo {n}" for n in range(AHEAD_MAX_REQUESTS + 4)]
    with key_executor(target) as ex:
        ex.run("true", become=True, timeout=30, then=tuple(follow(s) for s in scripts))
        outputs = [
            ex.run(s, become=True, timeout=30, then=tuple(follow(t) for t in scripts[n + 1 :]))
            for n, s in enumerate(scripts)
        ]
    assert [r.stdout for r in outputs] == [f"{n}\n" for n in range(len(scripts))]


def test_a_failed_gate_leaves_the_follow_ups_unrun(target: NspawnTarget, marker: str) -> None:
    """Behind a command that exits with none of the gate's codes, nothing more runs."""
    then = (follow(f"echo first >> {marker}"), follow(f"echo second >> {marker}", after=None))
    with key_executor(target) as ex:
        ex.run("exit 1", become=True, timeout=30, then=then)
        assert lines_in(ex, marker) == []


def test_behind_an_any_gate_a_follow_up_runs_after_a_failure(
    target: NspawnTarget, marker: str
) -> None:
    with key_executor(target) as ex:
        ex.run("exit 1", become=True, timeout=30, then=(follow(f"echo ran >> {marker}", None),))
        result = ex.run(f"echo ran >> {marker}", become=True, timeout=30)
        assert (result.exit_code, lines_in(ex, marker)) == (0, ["ran"])


def test_a_follow_up_its_gate_skipped_runs_once_when_asked_for(
    target: NspawnTarget, marker: str
) -> None:
    script = f"echo ran >> {marker}"
    with key_executor(target) as ex:
        ex.run("exit 1", become=True, timeout=30, then=(follow(script),))
        result = ex.run(script, become=True, timeout=30)
        assert (result.exit_code, lines_in(ex, marker)) == (0, ["ran"])


def test_a_follow_up_is_killed_at_its_own_timeout(target: NspawnTarget) -> None:
    """And reported as timed out, though it ran for its whole second before it was asked for."""
    with key_executor(target) as ex:
        ex.run("true", become=True, timeout=30, then=(follow("sleep 20", timeout=1),))
        time.sleep(1.5)
        with pytest.raises(CommandTimeout, match="timed out after 1 s"):
            ex.run("sleep 20", become=True, timeout=1)


def test_a_follow_up_that_ran_unasked_is_an_error(target: NspawnTarget) -> None:
    """A caller that breaks its word loses that command's result: say so, loudly."""
    with key_executor(target) as ex:
        ex.run("true", become=True, timeout=30, then=(follow("echo unasked"),))
        with pytest.raises(TransportError, match=r"sent ahead ran .*: echo unasked"):
            ex.run("echo other", become=True, timeout=30)


def test_nothing_sent_ahead_runs_after_an_interrupt(
    target_factory: TargetFactory, marker: str
) -> None:
    """Ctrl-C while the first command runs: the shell is let go, and its queue with it."""
    target = target_factory()
    then = (follow(f"touch {marker}"),)
    with key_executor(target) as ex:
        threading.Timer(0.5, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            ex.run("sleep 1.5", become=True, timeout=30, then=then)
        time.sleep(2.5)  # well past the end of the sleep the follow-up waited behind
        assert ex.run(f"ls {marker} 2>&1", become=True, timeout=30).exit_code == 2


def test_a_follow_up_read_with_the_command_before_it_needs_no_more_reading(
    target: NspawnTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame already read is collected at once, not after a wait for data that never comes.

    The head's first output is handled slowly (on_output sleeps), so by the next read the
    head and its follow-up have ended and arrive together.
    """
    waits: list[float] = []  # reads that found nothing there and so waited for data

    def slow(stream: str, text: str) -> None:
        if text.startswith("x"):  # the framer holds "\n" back: it may begin the end marker
            time.sleep(1.0)

    with key_executor(target) as ex:
        then = (follow("echo one"),)
        ex.run("echo x; sleep 0.2", become=True, timeout=30, on_output=slow, then=then)

        def counted(chan: Any, wait: float) -> Any:
            if not (chan.recv_ready() or chan.recv_stderr_ready()):
                waits.append(wait)
            return receive(chan, wait)

        monkeypatch.setattr("agent.executors.ssh.rootshell.receive", counted)
        output = ex.run("echo one", become=True, timeout=30).stdout
    assert (output, waits) == ("one\n", [])
