"""Reading both streams of a paramiko channel without stalling, and collecting output.

One select loop per command reads stdout and stderr as they arrive: paramiko stops the
sender once a stream's window fills, so draining one stream to EOF before the other (what
testinfra does) deadlocks on a command that writes a lot to the other one.
"""

from __future__ import annotations

import codecs
import select
import time
from dataclasses import dataclass
from typing import BinaryIO, Literal

import paramiko

from agent.errors import TransferError
from agent.executors.base import Output, OutputCallback

Stream = Literal["stdout", "stderr"]

# Upper bound on one wait, so a passed deadline or a dead transport is noticed promptly
# even when the remote side is silent.
POLL_INTERVAL = 0.5
# paramiko's default window is 2 MiB; taking up to 1 MiB per read keeps syscalls few.
_READ_SIZE = 1 << 20


@dataclass(frozen=True)
class Received:
    """Bytes taken from a channel in one wait."""

    stdout: bytes
    stderr: bytes


def receive(chan: paramiko.Channel, wait: float) -> Received:
    """Wait up to ``wait`` s for data, EOF or close on ``chan``, then take what is there."""
    if not (_has_data(chan) or chan.eof_received or chan.closed):
        select.select([chan], [], [], max(wait, 0.0))
    stdout = chan.recv(_READ_SIZE) if chan.recv_ready() else b""
    stderr = chan.recv_stderr(_READ_SIZE) if chan.recv_stderr_ready() else b""
    return Received(stdout, stderr)


def _has_data(chan: paramiko.Channel) -> bool:
    return chan.recv_ready() or chan.recv_stderr_ready()


def drained(chan: paramiko.Channel) -> bool:
    """No more data will come (EOF or closed) and nothing is left in the buffers."""
    return bool(chan.eof_received or chan.closed) and not _has_data(chan)


def remaining(deadline: float | None, cap: float = POLL_INTERVAL) -> float:
    """Seconds to wait now: until ``deadline``, at most ``cap``."""
    if deadline is None:
        return cap
    return max(0.0, min(cap, deadline - time.monotonic()))


def passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


@dataclass(frozen=True)
class Finished:
    """How a command's channel ended.

    ``exit_code`` is None when the channel (or root shell) ended without reporting one;
    ``client_timeout`` is True when the client-side deadline passed first. ``ready_at``
    (``time.monotonic()``), for a command sent ahead: when the one before it was seen to
    end, the earliest it can have started; its time counts from there.
    """

    exit_code: int | None
    client_timeout: bool = False
    ready_at: float | None = None


class ChannelCollector:
    """Keeps (or forwards) a command's output and reports decoded chunks as they come.

    stdout goes to ``stdout_sink`` as raw bytes when one is given (a tar stream must stay
    binary), otherwise it is kept; stderr is always kept. Kept text is decoded as UTF-8 at
    the end, with invalid bytes replaced rather than failing a step over a stray byte.
    """

    def __init__(self, on_output: OutputCallback | None, stdout_sink: BinaryIO | None) -> None:
        self._on_output = on_output
        self._sink = stdout_sink
        self._kept: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._counts: dict[Stream, int] = {"stdout": 0, "stderr": 0}
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }

    def add(self, stream: Stream, data: bytes) -> None:
        if not data:
            return
        self._counts[stream] += len(data)
        if stream == "stdout" and self._sink is not None:
            self._write_sink(data)
        else:
            self._kept[stream] += data
        if self._on_output is not None:
            text = self._decoders[stream].decode(data)
            if text:
                self._on_output(stream, text)

    def _write_sink(self, data: bytes) -> None:
        assert self._sink is not None
        try:
            self._sink.write(data)
        except OSError as exc:
            raise TransferError(f"cannot write command output to the local sink: {exc}") from exc

    def output(self) -> Output:
        return Output(
            stdout=self._kept["stdout"].decode("utf-8", errors="replace"),
            stderr=self._kept["stderr"].decode("utf-8", errors="replace"),
            stdout_bytes=self._counts["stdout"],
            stderr_bytes=self._counts["stderr"],
        )
