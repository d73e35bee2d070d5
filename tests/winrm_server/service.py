"""The WinRS shell service: Create, Command, Receive, Send, Signal, Delete (and Get).

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``).
Requests arrive parsed (:mod:`.soap`) and authenticated (:mod:`.server`); answers are
the envelopes Windows sends, with ``a:RelatesTo`` echoing the request's MessageID.
Faults are raised as :class:`~tests.winrm_server.soap.Fault` and rendered by the server.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field

from tests.winrm_server.machine import WindowsMachine
from tests.winrm_server.programs import resolve
from tests.winrm_server.shells import Command, Shell
from tests.winrm_server.soap import (
    CMD_RESOURCE,
    SHELL,
    TRANSFER,
    Fault,
    Request,
    element,
    envelope,
    format_duration,
    new_guid,
    parse_duration,
    q,
)

# Windows caps a client's OperationTimeout at MaxTimeoutms (default 60000 ms).
MAX_TIMEOUT = 60.0
_STATE = SHELL + "/CommandState/"


@dataclass(frozen=True)
class SignalRecord:
    """A Signal the service received: which command, which code, and whether it ran."""

    command_id: str
    code: str
    was_running: bool


@dataclass
class Stats:
    """What tests assert on: how the client used the service."""

    creates: int = 0
    deletes: int = 0
    command_lines: list[str] = field(default_factory=list)
    signals: list[SignalRecord] = field(default_factory=list)
    timeouts: int = 0  # TimedOut faults sent
    expired: list[str] = field(default_factory=list)  # shells the service deleted, why
    internal_errors: list[str] = field(default_factory=list)


class WinRsService:
    """All shells of one machine; thread-safe (one HTTP thread per connection)."""

    def __init__(self, machine: WindowsMachine, listener_url: str) -> None:
        self.machine = machine
        self.listener_url = listener_url
        self.shells: dict[str, Shell] = {}
        self.stats = Stats()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        threading.Thread(target=self._enforce_quotas, daemon=True).start()

    def handle(self, request: Request, user: str, client_ip: str) -> bytes:
        """The response body for ``request``; raises Fault (HTTP 500) or PoweredOff."""
        action = request.action
        if action == TRANSFER + "/Create":
            return self._create(request, user, client_ip)
        if action == TRANSFER + "/Get":
            return self._get(request)
        if action == TRANSFER + "/Delete":
            return self._delete(request)
        handlers = {
            SHELL + "/Command": self._command,
            SHELL + "/Receive": self._receive,
            SHELL + "/Send": self._send,
            SHELL + "/Signal": self._signal,
        }
        handler = handlers.get(action)
        if handler is None:
            raise Fault.action_not_supported(action)
        return handler(request)

    def shutdown(self) -> None:
        """Kill every process (the machine powered off, or the test ended)."""
        self._stopping.set()
        with self._lock:
            for shell in self.shells.values():
                shell.kill_all()
            self.shells.clear()

    # -- quotas and the idle timeout -------------------------------------------------------

    def _enforce_quotas(self) -> None:
        """What the WinRM service does on its own: it deletes a shell (killing its
        processes, job-object style) that was idle longer than its IdleTimeout (the
        client's, capped by WSMan:\\localhost\\Shell\\IdleTimeout), or whose processes
        exceed MaxMemoryPerShellMB or MaxProcessesPerShell."""
        while not self._stopping.wait(0.01):
            config = self.machine.winrm_shell_config
            now = time.monotonic()
            with self._lock:
                shells = list(self.shells.values())
            for shell in shells:
                idle_limit = config["IdleTimeout"] / 1000
                if shell.idle_timeout is not None:
                    idle_limit = min(idle_limit, shell.idle_timeout)
                running = [c for c in shell.commands.values() if not c.done]
                reason = None
                if shell.receiving == 0 and now - shell.last_used > idle_limit * (
                    self.machine.time_scale
                ):
                    reason = "IdleTimeout"
                elif running and self.machine.powershell_memory_mb > config["MaxMemoryPerShellMB"]:
                    reason = "MaxMemoryPerShellMB"
                elif len(running) > config["MaxProcessesPerShell"]:
                    reason = "MaxProcessesPerShell"
                if reason is not None:
                    self.delete_shell(shell.id, reason)

    def delete_shell(self, shell_id: str, reason: str) -> None:
        """The service deletes a shell by itself; the client learns it at its next request."""
        with self._lock:
            shell = self.shells.pop(shell_id, None)
            if shell is not None:
                self.stats.expired.append(reason)
        if shell is not None:
            shell.kill_all()

    # -- shells ---------------------------------------------------------------------------

    def _shell(self, request: Request) -> Shell:
        shell_id = request.selectors.get("ShellId", "").upper()
        with self._lock:
            shell = self.shells.get(shell_id)
        if shell is None:
            raise Fault.unknown_shell()
        shell.last_used = time.monotonic()
        return shell

    def _create(self, request: Request, user: str, client_ip: str) -> bytes:
        if request.resource_uri != CMD_RESOURCE:
            raise Fault.action_not_supported(request.resource_uri)
        body = request.body.find(q("rsp", "Shell"))
        if body is None:
            raise Fault.invalid_header("rsp:Shell missing from Create")
        idle = body.findtext(q("rsp", "IdleTimeOut"))
        environment = {
            v.get("Name", ""): v.text or ""
            for v in body.iterfind(f"{q('rsp', 'Environment')}/{q('rsp', 'Variable')}")
        }
        shell = Shell(
            id=new_guid(),
            owner=user,
            client_ip=client_ip,
            codepage=int(request.option("WINRS_CODEPAGE", "437") or 437),
            environment=environment,
            working_directory=body.findtext(q("rsp", "WorkingDirectory")),
            idle_timeout=parse_duration(idle) if idle else None,
            input_streams=body.findtext(q("rsp", "InputStreams")) or "stdin",
            output_streams=body.findtext(q("rsp", "OutputStreams")) or "stdout stderr",
        )
        with self._lock:
            self.shells[shell.id] = shell
            self.stats.creates += 1
        created = (
            "<x:ResourceCreated>"
            f"{element('a:Address', self.listener_url)}"
            "<a:ReferenceParameters>"
            f"{element('w:ResourceURI', CMD_RESOURCE)}"
            f"<w:SelectorSet>{element('w:Selector', shell.id, Name='ShellId')}</w:SelectorSet>"
            "</a:ReferenceParameters></x:ResourceCreated>"
        )
        return envelope(
            TRANSFER + "/CreateResponse",
            request.message_id,
            created + _describe(shell),
            kind="transfer",
        )

    def _get(self, request: Request) -> bytes:
        shell = self._shell(request)
        return envelope(TRANSFER + "/GetResponse", request.message_id, _describe(shell), kind="get")

    def _delete(self, request: Request) -> bytes:
        shell = self._shell(request)
        with self._lock:
            self.shells.pop(shell.id, None)
            self.stats.deletes += 1
        shell.kill_all()  # job-object semantics: the shell's processes die with it
        return envelope(TRANSFER + "/DeleteResponse", request.message_id, "", kind="delete")

    # -- commands -------------------------------------------------------------------------

    def _command(self, request: Request) -> bytes:
        shell = self._shell(request)
        line = request.body.find(q("rsp", "CommandLine"))
        if line is None:
            raise Fault.invalid_header("rsp:CommandLine missing from Command")
        executable = (line.findtext(q("rsp", "Command")) or "").strip()
        arguments = [a.text or "" for a in line.iterfind(q("rsp", "Arguments"))]
        program = resolve(
            self.machine,
            executable,
            arguments,
            skip_cmd_shell=request.flag("WINRS_SKIP_CMD_SHELL"),
        )
        self.stats.command_lines.append(" ".join([executable, *arguments]))
        command = shell.start(self.machine, program)
        body = f"<rsp:CommandResponse>{element('rsp:CommandId', command.id)}</rsp:CommandResponse>"
        return envelope(SHELL + "/CommandResponse", request.message_id, body, kind="transfer")

    def _receive(self, request: Request) -> bytes:
        shell = self._shell(request)
        desired = request.body.find(f"{q('rsp', 'Receive')}/{q('rsp', 'DesiredStream')}")
        command = shell.command(desired.get("CommandId") if desired is not None else None)
        timeout = min(request.operation_timeout or MAX_TIMEOUT, MAX_TIMEOUT)
        shell.receiving += 1  # a client waiting in a Receive is not idle
        try:
            chunks, done = command.receive(timeout * self.machine.time_scale)
        except Fault:
            self.stats.timeouts += 1
            raise
        finally:
            shell.receiving -= 1
            shell.last_used = time.monotonic()
        with self._lock:
            deleted = shell.id not in self.shells
        if deleted:
            raise Fault.unknown_shell()  # deleted while this Receive waited
        if command.internal_error is not None:
            self.stats.internal_errors.append(command.internal_error)
        return envelope(
            SHELL + "/ReceiveResponse",
            request.message_id,
            _receive_body(command, chunks, done),
            kind="shell",
        )

    def _send(self, request: Request) -> bytes:
        shell = self._shell(request)
        stream = request.body.find(f"{q('rsp', 'Send')}/{q('rsp', 'Stream')}")
        if stream is None:
            raise Fault.invalid_header("rsp:Stream missing from Send")
        command = shell.command(stream.get("CommandId"))
        data = base64.b64decode(stream.text or "")
        command.process.feed_stdin(data, end=stream.get("End", "").lower() == "true")
        return envelope(
            SHELL + "/SendResponse", request.message_id, "<rsp:SendResponse/>", kind="transfer"
        )

    def _signal(self, request: Request) -> bytes:
        shell = self._shell(request)
        signal = request.body.find(q("rsp", "Signal"))
        command_id = signal.get("CommandId") if signal is not None else None
        code = (signal.findtext(q("rsp", "Code")) if signal is not None else None) or ""
        command = shell.forget(command_id or "")
        self.stats.signals.append(SignalRecord(command.id, code.strip(), not command.done))
        return envelope(
            SHELL + "/SignalResponse", request.message_id, "<rsp:SignalResponse/>", kind="transfer"
        )


def _describe(shell: Shell) -> str:
    """The rsp:Shell element Windows returns from Create and Get (recorded layout)."""
    parts = [
        element("rsp:ShellId", shell.id),
        element("rsp:ResourceUri", CMD_RESOURCE),
        element("rsp:Owner", shell.owner),
        element("rsp:ClientIP", shell.client_ip),
    ]
    if shell.environment:
        variables = "".join(
            element("rsp:Variable", value, Name=name) for name, value in shell.environment.items()
        )
        parts.append(f"<rsp:Environment>{variables}</rsp:Environment>")
    if shell.working_directory:
        parts.append(element("rsp:WorkingDirectory", shell.working_directory))
    parts += [
        element("rsp:IdleTimeOut", format_duration(shell.idle_timeout or 7200.0)),
        element("rsp:InputStreams", shell.input_streams),
        element("rsp:OutputStreams", shell.output_streams),
        element("rsp:ShellRunTime", "P0DT0H0M0S"),
        element("rsp:ShellInactivity", "P0DT0H0M0S"),
    ]
    return f'<rsp:Shell xmlns:rsp="{SHELL}">{"".join(parts)}</rsp:Shell>'


def _receive_body(command: Command, chunks: list[tuple[str, bytes]], done: bool) -> str:
    parts = [
        element(
            "rsp:Stream", base64.b64encode(data).decode("ascii"), Name=name, CommandId=command.id
        )
        for name, data in chunks
    ]
    if done:
        parts += [
            element("rsp:Stream", "", Name=name, CommandId=command.id, End="true")
            for name in ("stdout", "stderr")
        ]
        state = element("rsp:ExitCode", str(command.exit_code))
        parts.append(_command_state(command.id, "Done", state))
    else:
        parts.append(_command_state(command.id, "Running", ""))
    return f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>"


def _command_state(command_id: str, state: str, content: str) -> str:
    return (
        f'<rsp:CommandState CommandId="{command_id}" State="{_STATE}{state}">'
        f"{content}</rsp:CommandState>"
    )
