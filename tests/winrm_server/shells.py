"""WinRS shells, their commands, and the processes those commands run.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``).

Semantics kept from Windows (windows.md §4.4, the recordings, MS-WSMV):

* a command's output is buffered until a Receive takes it; a Receive waits until there
  is output, the command ends, or the OperationTimeout passes (then the TimedOut fault);
* a Receive returns at most ``RECEIVE_BUDGET`` bytes of output, so the answer stays under
  the client's MaxEnvelopeSize (153600) even base64-encoded; long output takes several;
* a Signal (terminate or ctrl_c) kills a running process and forgets the command; later
  requests for it get the "command identifier does not exist" fault;
* deleting a shell kills its processes (they live in the shell's job object);
* powering the machine off kills every process.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.winrm_server.machine import PoweredOff, WindowsMachine
from tests.winrm_server.soap import Fault, new_guid

RECEIVE_BUDGET = 96 * 1024
_CHUNK = 32 * 1024
_LINGER_QUIET = 0.01
_LINGER_MAX = 0.05


class Terminated(Exception):
    """Raised inside a program whose process was killed."""


class Process:
    """What a program running on the machine sees: its streams, stdin, clock, machine."""

    def __init__(
        self, machine: WindowsMachine, codepage: int, env: dict[str, str], cwd: str
    ) -> None:
        self.machine = machine
        self.codepage = codepage
        self.env = env
        self.cwd = cwd
        self.killed = threading.Event()
        self.output: list[tuple[str, bytes]] = []
        self.stdin = bytearray()
        self.stdin_closed = False
        self.changed = threading.Condition()
        # Started with Start-Process: in this process's job object, killed with it.
        self.children: list[Process] = []

    @property
    def encoding(self) -> str:
        return "utf-8" if self.codepage == 65001 else f"cp{self.codepage}"

    def write(self, stream: str, data: bytes) -> None:
        """Emit bytes on ``stdout`` or ``stderr`` (one chunk per write, as Windows does)."""
        self.check()
        with self.changed:
            for start in range(0, len(data), _CHUNK):
                self.output.append((stream, data[start : start + _CHUNK]))
            self.changed.notify_all()

    def write_text(self, stream: str, text: str) -> None:
        self.write(stream, text.encode(self.encoding, errors="replace"))

    def feed_stdin(self, data: bytes, end: bool) -> None:
        with self.changed:
            self.stdin.extend(data)
            self.stdin_closed = self.stdin_closed or end
            self.changed.notify_all()

    def read_stdin(self) -> bytes:
        """All of stdin, once the client has sent it with End="true"."""
        with self.changed:
            while not self.stdin_closed:
                self.check()
                self.changed.wait(0.05)
            return bytes(self.stdin)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of virtual time; a kill interrupts it."""
        if self.killed.wait(max(seconds, 0.0) * self.machine.time_scale):
            raise Terminated
        self.check()

    def check(self) -> None:
        if self.killed.is_set():
            raise Terminated
        if not self.machine.powered_on:
            raise PoweredOff

    def kill(self) -> None:
        self.killed.set()
        for child in self.children:
            child.kill()
        # The system closes a terminated process's handles (delete-on-close files go).
        self.machine.close_handles(self)
        with self.changed:
            self.changed.notify_all()


Program = Callable[[Process], int]


@dataclass
class Command:
    """One WinRS command: a process plus its WinRS-visible state."""

    id: str
    process: Process
    exit_code: int | None = None
    done: bool = False
    internal_error: str | None = None

    def start(self, program: Program) -> None:
        thread = threading.Thread(target=self._main, args=(program,), daemon=True)
        thread.start()

    def _main(self, program: Program) -> None:
        code = 1
        try:
            code = program(self.process)
        except (Terminated, PoweredOff):
            code = 1
        except Exception:  # noqa: BLE001  a bug in the double: the test must see it
            self.internal_error = traceback.format_exc()
            with contextlib.suppress(Terminated, PoweredOff):
                self.process.write_text("stderr", "test double internal error\r\n")
        self.process.machine.close_handles(self.process)  # the process has exited
        with self.process.changed:
            self.exit_code = code
            self.done = True
            self.process.changed.notify_all()

    def _linger(self) -> None:
        # Like Windows, answer a burst of writes ("hi", then "\n") in one Receive: wait
        # until the output has been quiet for a moment (or the command ended).
        process = self.process
        waited = 0.0
        while not self.done and waited < _LINGER_MAX:
            count = len(process.output)
            process.changed.wait(_LINGER_QUIET)
            waited += _LINGER_QUIET
            if len(process.output) == count:
                return

    def receive(self, timeout: float) -> tuple[list[tuple[str, bytes]], bool]:
        """Take buffered output, waiting up to ``timeout`` s; returns (chunks, done).

        Raises the TimedOut fault when nothing arrived in time, PoweredOff when the
        machine went away while waiting.
        """
        process = self.process
        deadline = time.monotonic() + timeout
        with process.changed:
            while not process.output and not self.done:
                if not process.machine.powered_on:
                    raise PoweredOff
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Fault.timed_out()
                process.changed.wait(min(remaining, 0.05))
            self._linger()
            if not process.machine.powered_on:
                raise PoweredOff
            taken: list[tuple[str, bytes]] = []
            size = 0
            while process.output and size + len(process.output[0][1]) <= RECEIVE_BUDGET:
                chunk = process.output.pop(0)
                taken.append(chunk)
                size += len(chunk[1])
            return taken, self.done and not process.output


@dataclass
class Shell:
    """One WinRS cmd shell: its options as created, and its running commands."""

    id: str
    owner: str
    client_ip: str
    codepage: int
    environment: dict[str, str]
    working_directory: str | None
    idle_timeout: float | None
    input_streams: str
    output_streams: str
    commands: dict[str, Command] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)
    receiving: int = 0  # Receive requests waiting now

    def start(self, machine: WindowsMachine, program: Program) -> Command:
        env = {**machine.env, **self.environment}
        cwd = self.working_directory or r"C:\Users\{}".format(self.owner.split("\\")[-1])
        command = Command(new_guid(), Process(machine, self.codepage, env, cwd))
        self.commands[command.id] = command
        command.start(program)
        return command

    def command(self, command_id: str | None) -> Command:
        if not command_id:
            raise Fault.invalid_parameter()
        command = self.commands.get(command_id.upper())
        if command is None:
            raise Fault.unknown_command()
        return command

    def forget(self, command_id: str) -> Command:
        command = self.command(command_id)
        command.process.kill()
        del self.commands[command.id]
        return command

    def kill_all(self) -> None:
        for command in self.commands.values():
            command.process.kill()
        self.commands.clear()
