"""A call that runs in a thread of its own while the caller goes on; its result, or its
error, handed back in the caller's thread.

For where imageprep waits on the target and has other work for it meanwhile: the facts
command beside the VM's lock (agent/facts.py). The thread runs in a copy of the caller's
context, so its log events carry the same bound keys and, in a fleet, reach the same
host's run log (agent.logging routes by context).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """``call()`` started in a daemon thread at once; :meth:`result` waits for it."""

    def __init__(self, call: Callable[[], T], *, name: str) -> None:
        self._call = call
        self._value: list[T] = []
        self._error: BaseException | None = None
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._work,), name=name, daemon=True
        )
        self._thread.start()

    def _work(self) -> None:
        try:
            self._value.append(self._call())
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            self._error = exc

    def result(self) -> T:
        """What the call returned, once it has; its exception, raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value[0]

    def abandon(self, wait: float) -> None:
        """Wait at most ``wait`` seconds for the call to end; drop its result or error."""
        self._thread.join(wait)
