"""A real Executor over local bash, for unit tests of code that sits on an Executor.

Commands really run (bash, tar, coreutils), only not over SSH: it is the transport that
is missing, not the behaviour. It never becomes root and never goes away on its own.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from agent.errors import CommandTimeout
from agent.executors.base import FollowUp, OutputCallback
from agent.results import CommandResult


class LocalShellExecutor:
    """A real Executor that runs each command with local bash instead of over SSH.

    It exists so the archive provider's remote script, tar and streaming run for real in
    unit tests. ``become`` is a no-op (the tests archive files they own), and
    ``path_prefix`` puts stand-in tools first on PATH.
    """

    def __init__(self, path_prefix: Path | None = None) -> None:
        self.env = dict(os.environ)
        if path_prefix is not None:
            self.env["PATH"] = f"{path_prefix}:{self.env['PATH']}"
        self.commands: list[str] = []
        self.closed = False

    @property
    def description(self) -> str:
        return "local bash"

    def run(
        self,
        command: str,
        *,
        become: bool = False,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        stdout_sink: BinaryIO | None = None,
        then: Sequence[FollowUp] = (),
    ) -> CommandResult:
        # Sends nothing ahead (the contract allows any prefix of ``then``, none included).
        self.commands.append(command)
        started = time.monotonic()
        with subprocess.Popen(
            ["bash", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        ) as proc:
            assert isinstance(proc.stdout, io.BufferedReader)
            stderr_pipe = proc.stderr
            assert stderr_pipe is not None
            stderr_parts: list[bytes] = []
            reader = threading.Thread(target=lambda: stderr_parts.append(stderr_pipe.read()))
            reader.start()
            killed = threading.Event()

            def kill() -> None:
                killed.set()
                os.killpg(proc.pid, signal.SIGKILL)

            timer = threading.Timer(timeout, kill) if timeout is not None else None
            if timer is not None:
                timer.start()
            stdout = bytearray()
            while chunk := proc.stdout.read1(1 << 16):
                if stdout_sink is not None:
                    stdout_sink.write(chunk)
                else:
                    stdout += chunk
                if on_output is not None:
                    on_output("stdout", chunk.decode("utf-8", "replace"))
            code = proc.wait()
            reader.join()
            if timer is not None:
                timer.cancel()
        stderr = b"".join(stderr_parts).decode("utf-8", "replace")
        if killed.is_set():
            raise CommandTimeout(f"{command[:40]!r} ran past {timeout} s", stderr=stderr)
        return CommandResult(
            command=command,
            exit_code=code,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr,
            duration=time.monotonic() - started,
            stdout_bytes=len(stdout),
            stderr_bytes=len(stderr),
        )

    def put(self, local: Path, remote: str, *, mode: int = 0o600) -> None:
        shutil.copyfile(local, remote)
        os.chmod(remote, mode)

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def is_connected(self) -> bool:
        return not self.closed

    def wait_disconnected(self, timeout: float) -> bool:
        # Local bash never goes away on its own: like a live SSH target, wait and say so.
        if not self.closed:
            time.sleep(timeout)
        return self.closed

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
