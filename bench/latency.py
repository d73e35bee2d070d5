"""A loopback TCP relay that delays what it carries: a link with a given round-trip time.

The benchmarks' targets sit behind a veth pair, a few microseconds away; users reach their
VMs over links of 1 to 100 ms (a CI runner to a cloud region). This kernel has no netem
(CONFIG_NET_SCH_NETEM is off), so the delay is added here instead: every chunk read from
one side is written to the other half the round-trip time later, in order, in both
directions. It models latency only, not bandwidth or loss, which is what decides how a
run's round trips add up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


class DelayProxy:
    """Listens on 127.0.0.1 and relays each connection to ``upstream``, ``rtt`` later."""

    def __init__(self, upstream: Endpoint, rtt: float) -> None:
        self._upstream = upstream
        self._one_way = rtt / 2
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        # Each open relay's writers: what _close aborts to end it.
        self._relays: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}
        self._closing = False
        self.endpoint = Endpoint("127.0.0.1", 0)

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.endpoint = started.result(timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        # Nothing should be left; if something is, end it here rather than let the loop
        # be closed under a pending coroutine.
        left = asyncio.all_tasks(self._loop)
        if left:
            self._loop.run_until_complete(_cancelled(left))
        self._loop.close()

    async def _listen(self) -> Endpoint:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return Endpoint("127.0.0.1", port)

    async def _close(self) -> None:
        """Stop listening and end the relays still open, their sockets closed."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        # Not Task.cancel(): asyncio 3.11's start_server callback calls exception() on
        # the handler's task and logs the CancelledError that raises. Cut the sockets
        # instead; each relay then ends as on a reset.
        for writers in self._relays.values():
            for writer in writers:
                writer.transport.abort()
        await asyncio.gather(*self._relays, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        if self._closing:  # accepted just before _close stopped the listener
            client_out.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        writers = self._relays.setdefault(task, [client_out])
        try:
            server_in, server_out = await asyncio.open_connection(
                self._upstream.host, self._upstream.port
            )
            writers.append(server_out)
            if self._closing:  # _close ran while this relay was still connecting
                for writer in writers:
                    writer.transport.abort()
            # A TaskGroup, not gather: if one direction failed, gather would leave the
            # other running after the relay ended.
            async with asyncio.TaskGroup() as directions:
                directions.create_task(self._pump(client_in, server_out))
                directions.create_task(self._pump(server_in, client_out))
        except OSError:
            pass  # the upstream refused the connection: the client sees its end
        finally:
            # Only now: each socket carries one direction's reads and the other's writes.
            for writer in writers:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            del self._relays[task]

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy source to sink, each chunk one-way-delay after it was read; EOF likewise.

        A deadline per chunk, not a sleep per chunk: chunks in flight overlap as on a
        real link, so a stream is delayed once, not once per chunk. A socket error ends
        a direction as EOF does (the reader) or drops what is left for a peer that is
        gone (the writer); it never ends the relay early.
        """
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while True:
                try:
                    data = await source.read(_CHUNK)
                except OSError:
                    data = b""
                await queue.put((time.monotonic() + self._one_way, data))
                if not data:
                    return

        async def write() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                try:
                    if not data:
                        if sink.can_write_eof():
                            sink.write_eof()
                        return
                    sink.write(data)
                    await sink.drain()
                except OSError:
                    return

        async with asyncio.TaskGroup() as both:
            both.create_task(read())
            both.create_task(write())


async def _cancelled(tasks: set[asyncio.Task[object]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def delayed(upstream: Endpoint, rtt: float) -> Iterator[Endpoint]:
    """``upstream`` itself when rtt is 0, else a DelayProxy's endpoint in front of it."""
    if rtt <= 0:
        yield upstream
        return
    with DelayProxy(upstream, rtt) as proxy:
        yield proxy.endpoint
