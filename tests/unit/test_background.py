"""Background: a call in a thread of its own, its result or error handed back."""

from __future__ import annotations

import threading

import pytest

from agent.background import Background


def test_result_is_what_the_call_returned() -> None:
    """result() waits for the call and returns its value."""
    assert Background(lambda: 42, name="test").result() == 42


def test_the_calls_error_is_raised_in_the_caller() -> None:
    """An exception in the thread comes out of result(), not out of the thread."""

    def fail() -> int:
        raise ValueError("from the thread")

    with pytest.raises(ValueError, match="from the thread"):
        Background(fail, name="test").result()


def test_abandon_returns_while_the_call_still_runs() -> None:
    """abandon() waits at most the time given, and drops what the call does later."""
    release = threading.Event()
    call = Background(lambda: release.wait(5), name="test")
    call.abandon(0.01)
    release.set()
    assert call.result() is True
