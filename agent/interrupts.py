"""Ctrl-C for worker threads: a fleet's runs stop the way a single run does.

Python delivers SIGINT (and the CLI's SIGTERM) to the main thread only, as
KeyboardInterrupt. A run already knows how to stop on KeyboardInterrupt: it records the
running step as interrupted, closes its journal and writes result.json with exit 130
(:mod:`agent.runner`). So the fleet's main thread, when interrupted, raises the same
exception in every worker thread that is inside a run (CPython's
``PyThreadState_SetAsyncExc``). The exception lands at the worker's next Python
instruction: at the latest when a wait on the target returns, which the executors bound
to half a second (``agent.executors.ssh.channel.POLL_INTERVAL``).

Each worker is interrupted at most once, and only inside :meth:`ThreadInterrupts.section`;
one that leaves the section before the exception landed has it withdrawn, so it never
surfaces in the fleet's own bookkeeping. A worker that has not started its run yet does
not start it.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    # None withdraws an exception that is pending and has not landed yet.
    _set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else ctypes.py_object())


class ThreadInterrupts:
    """Delivers KeyboardInterrupt to the threads inside a :meth:`section`, once each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside: set[int] = set()
        self._delivered: set[int] = set()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    @contextmanager
    def section(self) -> Iterator[None]:
        """Code that may be interrupted; raises KeyboardInterrupt at once when stopping."""
        ident = threading.get_ident()
        with self._lock:
            if self._stopping:
                raise KeyboardInterrupt
            self._inside.add(ident)
        try:
            yield
        finally:
            with self._lock:
                self._inside.discard(ident)
                if ident in self._delivered:
                    _raise_in(ident, None)

    def interrupt_all(self) -> int:
        """Interrupt every thread inside a section; no new section starts. Returns how many."""
        with self._lock:
            self._stopping = True
            targets = self._inside - self._delivered
            for ident in targets:
                _raise_in(ident, KeyboardInterrupt)
            self._delivered |= targets
        return len(targets)


def run_threads(
    work: Callable[[], None], count: int, *, on_interrupt: Callable[[], object], name: str
) -> bool:
    """Run ``work`` on ``count`` threads and wait for all of them; True if Ctrl-C came.

    On Ctrl-C (KeyboardInterrupt in this, the main thread) ``on_interrupt`` is called
    once, then every thread is still waited for: they are writing their reports. A
    second Ctrl-C does not cut that short.

    The wait polls each thread's own "done" flag rather than calling ``Thread.join``:
    a join that Ctrl-C interrupts can mark a thread that is still running as stopped
    (CPython 3.11, ``threading._wait_for_tstate_lock``'s handler for bpo-45274 releases
    the running thread's state lock), and the process would then exit under it.
    """
    done = [threading.Event() for _ in range(count)]

    def body(finished: threading.Event) -> None:
        try:
            work()
        finally:
            finished.set()

    threads = [
        threading.Thread(target=body, args=(finished,), name=f"{name}-{n}")
        for n, finished in enumerate(done)
    ]
    interrupted = False
    try:
        for thread in threads:
            thread.start()
        _wait(done)
    except KeyboardInterrupt:
        interrupted = True
        on_interrupt()
        started = [event for event, thread in zip(done, threads, strict=True) if thread.ident]
        while True:
            with contextlib.suppress(KeyboardInterrupt):
                _wait(started)
                break
    return interrupted


def _wait(done: list[threading.Event]) -> None:
    while not all(event.is_set() for event in done):
        time.sleep(0.05)
