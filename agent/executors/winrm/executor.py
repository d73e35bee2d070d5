"""WinRmExecutor: run PowerShell on a Windows target over one WinRS shell (pywinrm).

Layers a command passes through:

* one WinRS cmd shell for the whole run, code page 65001 (UTF-8), opened on connect and
  reopened when the listener forgets it (reboot, service restart) or a connection was
  lost; pywinrm's ``Session.run_ps`` would open and delete a shell per command;
* each script runs as ``powershell -NoProfile -NonInteractive -EncodedCommand`` with
  ``$ProgressPreference='SilentlyContinue'`` prepended; a script too long for cmd.exe's
  command line goes through stdin behind a SHA-256 check (``scripts``);
* output is read with our own Receive loop (``get_command_output_raw``): pywinrm's
  ``get_command_output`` re-polls OperationTimeout faults forever, ours stops at the
  command's deadline and then signals ``terminate`` so the process dies on the target;
* CLIXML stderr is decoded to plain text, CRLF becomes LF (``output``);
* every pywinrm, requests and pyspnego error becomes an :mod:`agent.errors` error
  (``errors``); shells are deleted in every path.

``become`` changes nothing on Windows: there is no sudo over WinRM. The WinRM user must be
an administrator whose remote token is elevated (UAC filters remote logons of other local
administrators unless LocalAccountTokenFilterPolicy=1): the built-in Administrator or a
domain administrator. Preflight checks this rather than trying to elevate.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import math
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import structlog
import winrm.exceptions as wex
from winrm.protocol import Protocol

from agent.errors import (
    CommandTimeout,
    Disconnected,
    TargetBusy,
    TransferError,
    TransportError,
)
from agent.executors.base import BaseExecutor, Exchanged, FollowUp, OutputCallback
from agent.executors.winrm import scripts
from agent.executors.winrm.errors import ShellGone, WinRmErrors
from agent.executors.winrm.options import WinRmOptions, settings
from agent.executors.winrm.output import ShellOutputDecoder
from agent.executors.winrm.vmlock import BUSY_EXIT, LOCK_FILE, holder_script
from agent.targets import Target
from agent.vmlock import LockHolder, VmLockTaken, busy, taken

log = structlog.get_logger(__name__)

_PROBE_INTERVAL = 0.1
# How long the lock shell's command may take to say whether it holds the lock.
_LOCK_ANSWER_TIMEOUT = 60.0
_PROBE_TIMEOUT = 1.0


class _DeadlinePassed(Exception):
    """The client-side deadline of a command passed (turned into CommandTimeout)."""


class WinRmExecutor(BaseExecutor):
    """Runs PowerShell on one Windows target over one WinRS shell (see module docstring)."""

    transport_name = "winrm"

    def __init__(self, target: Target, options: WinRmOptions) -> None:
        super().__init__(target)
        self._options = options
        self._settings = settings(target, options)
        self._endpoint = self._settings.endpoint
        self._protocol: Protocol | None = None
        self._shell_id: str | None = None
        # Set by connect, cleared by close: a lost shell is reopened only in between.
        self._opened = False
        # The lock on the VM (vmlock): who holds it, and the shell whose process holds it.
        self._lock_holder: LockHolder | None = None
        self._lock_shell: str | None = None
        self._lock_command: str | None = None
        self._lock_touched = 0.0
        if options.insecure_skip_verify and target.scheme == "winrm+https":
            log.warning(
                "winrm.tls_verification_disabled",
                endpoint=self._endpoint,
                risk="anyone on the path can impersonate the target and read the password",
            )

    def _errors(self, action: str, *, connected: bool = True) -> WinRmErrors:
        return WinRmErrors(
            self._endpoint,
            action,
            connected=connected,
            read_timeout=self._options.read_timeout,
            connect_timeout=self._options.connect_timeout,
            client_cert=self._options.transport == "certificate",
        )

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        """Open the run's shell (idempotent while it is open)."""
        if self._shell_id is None:
            self._open_shell(connected=False)

    def _open_shell(self, *, connected: bool) -> str:
        self._drop_shell()
        with self._errors("opening a shell", connected=connected):
            protocol = Protocol(self._endpoint, **self._settings.protocol_kwargs)
        # pywinrm takes one whole-second time-out for connect and read alike and hands
        # it to requests' Session.send (its only use); requests also accepts the pair
        # (connect, read), which bounds a listener that never accepts by --connect-timeout.
        protocol.transport.read_timeout_sec = (  # type: ignore[assignment]
            self._options.connect_timeout,
            self._options.read_timeout,
        )
        started = time.monotonic()
        try:
            with self._errors("opening a shell", connected=connected):
                # An explicit idle timeout rather than whatever the listener defaults to.
                shell_id: str = protocol.open_shell(
                    codepage=self._options.codepage,
                    idle_timeout=f"PT{self._options.shell_idle_timeout}.000S",
                    env_vars={
                        name: secret.value
                        for name, secret in self._options.shell_environment.items()
                    }
                    or None,
                )
        except BaseException:
            protocol.transport.close_session()
            raise
        self._protocol, self._shell_id, self._opened = protocol, shell_id, True
        if connected and self._lock_holder is not None:
            # A new shell after a loss or a reboot: the lock went with the old one.
            retaken = self._take_vm_lock(self._lock_holder)
            if retaken.stale_holder is not None:
                log.warning("vm_lock.stale", stale_holder=retaken.stale_holder.describe())
        log.info(
            "winrm.connected",
            endpoint=self._endpoint,
            user=self._target.user,
            transport=self._options.transport,
            encrypted=self._settings.encrypted,
            shell=shell_id,
            duration_s=round(time.monotonic() - started, 3),
        )
        return shell_id

    def _drop_shell(self) -> None:
        """Forget the shell and its HTTP connections (after a loss) without a Delete."""
        if self._protocol is not None:
            self._protocol.transport.close_session()
        # The lock shell is not forgotten: retaking the lock deletes it first, in case
        # only the run's shell was lost (an idle timeout) and it still holds the lock.
        self._protocol, self._shell_id = None, None

    # -- the lock on the VM (agent/vmlock.py, executors/winrm/vmlock.py) ----------------

    def hold_vm_lock(self, holder: LockHolder) -> VmLockTaken:
        """Take the VM's lock in a shell of its own; a shell reopened later retakes it."""
        self._lock_holder = None
        got = self._take_vm_lock(holder)
        self._lock_holder = holder
        return got

    def _take_vm_lock(self, holder: LockHolder) -> VmLockTaken:
        try:
            return self._take_vm_lock_once(holder)
        except TargetBusy as busy_error:
            found = busy_error.holder
            if not isinstance(found, LockHolder) or not found.same_run_here(holder):
                raise
            if found.shell is None:
                raise
        # An earlier session of this very run holds it: an interrupted run leaves its
        # shells to WinRM (it terminates nothing). The lock is this run's: take it back.
        log.info("vm_lock.taken_back", endpoint=self._endpoint, shell=found.shell)
        self._delete_shell(found.shell)
        return self._take_vm_lock_once(holder)

    def _take_vm_lock_once(self, holder: LockHolder) -> VmLockTaken:
        protocol = self._require_protocol()
        self._release_vm_lock()
        with self._errors("opening the lock shell"):
            shell_id: str = protocol.open_shell(
                codepage=self._options.codepage,
                idle_timeout=f"PT{self._options.shell_idle_timeout}.000S",
            )
        holder = dataclasses.replace(holder, shell=shell_id)
        try:
            script = scripts.encode(scripts.PREAMBLE + holder_script(holder.to_line()))
            with self._errors("taking the lock on the VM"):
                command_id: str = protocol.run_command(
                    shell_id, scripts.POWERSHELL, [*scripts.POWERSHELL_FLAGS, script]
                )
            line, code, stderr = self._lock_answer(shell_id, command_id)
        except BaseException:
            self._delete_shell(shell_id)
            raise
        state, _, record = line.partition(":")
        if state == "held" and code is None:
            self._lock_shell, self._lock_command = shell_id, command_id
            self._lock_touched = time.monotonic()
            log.info("vm_lock.taken", endpoint=self._endpoint, path=LOCK_FILE)
            return taken(LOCK_FILE, holder, LockHolder.parse(record))
        self._delete_shell(shell_id)
        if state == "busy" and code == BUSY_EXIT:
            raise busy(self._target.display, LOCK_FILE, LockHolder.parse(record))
        raise TransportError(
            f"cannot take the lock on the VM {self._endpoint} ({LOCK_FILE}, exit {code}): "
            f"{stderr.strip()[:200] or line[:200] or 'no output'}"
        )

    def _lock_answer(self, shell_id: str, command_id: str) -> tuple[str, int | None, str]:
        """The lock command's first line, its exit code if it ended, and its stderr."""
        protocol = self._require_protocol()
        collector = ShellOutputDecoder(self._options.codepage)
        deadline = time.monotonic() + _LOCK_ANSWER_TIMEOUT
        raw = b""
        code: int | None = None
        while b"\n" not in raw and code is None:
            if time.monotonic() > deadline:
                raise CommandTimeout(
                    f"the lock on the VM {self._endpoint}: no answer within "
                    f"{_LOCK_ANSWER_TIMEOUT:g} s"
                )
            with self._errors("taking the lock on the VM"):
                try:
                    stdout, stderr, exit_code, done = protocol.get_command_output_raw(
                        shell_id, command_id
                    )
                except wex.WinRMOperationTimeoutError:
                    continue
            raw += stdout
            collector.feed(stdout, stderr)
            code = int(exit_code) if done else None
        output = collector.finish()
        return output.stdout.split("\n", 1)[0].strip(), code, output.stderr

    def _keep_vm_lock(self) -> None:
        """A Receive on the lock shell now and then, so WinRM never sees it idle.

        A lock shell WinRM deleted anyway (a quota, a restart) means the lock was lost:
        said loudly, and taken again.
        """
        shell_id, command_id, protocol = self._lock_shell, self._lock_command, self._protocol
        if shell_id is None or command_id is None or protocol is None:
            return
        if time.monotonic() - self._lock_touched < self._options.lock_keepalive:
            return
        self._lock_touched = time.monotonic()
        protocol.operation_timeout_sec = 1  # the heartbeat is usually there already
        try:
            with (
                self._errors("keeping the lock on the VM"),
                contextlib.suppress(wex.WinRMOperationTimeoutError),
            ):
                protocol.get_command_output_raw(shell_id, command_id)
        except ShellGone:
            log.error("vm_lock.lost", endpoint=self._endpoint, shell=shell_id)
            self._lock_shell = self._lock_command = None
            if self._lock_holder is not None:
                self._take_vm_lock(self._lock_holder)
        except TransportError as exc:
            log.debug("vm_lock.keepalive_failed", endpoint=self._endpoint, error=str(exc))
        finally:
            protocol.operation_timeout_sec = self._options.operation_timeout

    def _release_vm_lock(self) -> None:
        """Delete the lock shell: its process ends, the file closes and is deleted."""
        shell_id, self._lock_shell, self._lock_command = self._lock_shell, None, None
        if shell_id is not None:
            self._delete_shell(shell_id)

    def _delete_shell(self, shell_id: str) -> None:
        if self._protocol is None:
            return
        try:
            with self._errors("deleting the lock shell"):
                self._protocol.close_shell(shell_id, close_session=False)
        except TransportError as exc:
            log.debug("winrm.close_failed", endpoint=self._endpoint, error=str(exc))

    def _abandon(self, label: str) -> None:
        """Forget the shell without a Signal or Delete; close() then sends nothing."""
        log.warning(
            "winrm.abandoned",
            endpoint=self._endpoint,
            shell=self._shell_id,
            command=label,
            note="interrupted: the command and its shell are left running on the target",
        )
        self._drop_shell()
        self._opened = False

    def is_connected(self) -> bool:
        """True while the run's shell is open and no loss was seen (sends nothing)."""
        return self._shell_id is not None

    def wait_disconnected(self, timeout: float) -> bool:
        """True once the listener stops accepting connections (powered off); False on timeout.

        HTTP keeps no connection to watch, so this probes the port with a bare TCP
        connect: no credentials, no shell, nothing started on the target.
        """
        deadline = time.monotonic() + timeout
        while self._listener_answers():
            if time.monotonic() >= deadline:
                return False
            time.sleep(_PROBE_INTERVAL)
        self._drop_shell()
        return True

    def listener_answers(self) -> bool:
        """Whether the WinRM port accepts a TCP connection now (sends nothing else)."""
        return self._listener_answers()

    def _listener_answers(self) -> bool:
        address = (self._target.host, self._target.port)
        try:
            with socket.create_connection(address, timeout=_PROBE_TIMEOUT):
                return True
        except OSError:
            return False

    # -- commands -----------------------------------------------------------------------

    def _exchange(
        self,
        command: str,
        label: str,
        *,
        become: bool,
        timeout: float | None,
        on_output: OutputCallback | None,
        stdout_sink: BinaryIO | None,
        then: Sequence[FollowUp],
    ) -> Exchanged:
        """Run PowerShell ``command``; ``become`` is a no-op (see module docstring).

        Nothing is sent ahead (``then``): a WS-Man Command request carries one command,
        and a follow-up is sent when it is asked for.
        """
        self._keep_vm_lock()
        collector = ShellOutputDecoder(self._options.codepage, on_output, stdout_sink)
        deadline = time.monotonic() + timeout if timeout is not None else None
        try:
            exit_code = self._execute(scripts.PREAMBLE + command, label, deadline, collector)
        except _DeadlinePassed:
            output = collector.finish()
            raise CommandTimeout(
                f"command timed out after {timeout:g} s on {self._endpoint} and was "
                f"terminated: {label}",
                stdout=output.stdout,
                stderr=output.stderr,
            ) from None
        return Exchanged(exit_code, collector.finish())

    def _execute(
        self,
        script: str,
        label: str,
        deadline: float | None,
        collector: ShellOutputDecoder,
        *,
        payload: bytes | None = None,
    ) -> int:
        """Start ``script``, feed it ``payload`` on stdin, collect output; the exit code.

        A script too long for the command line is swapped for a stdin bootstrap here.
        """
        if payload is None and not scripts.fits_command_line(script):
            script, payload = scripts.run_from_stdin(script)
        via = "stdin" if payload is not None else "command line"
        log.debug("winrm.script_sent", command=label, via=via, deadline=deadline is not None)
        shell_id, command_id = self._start(scripts.encode(script), label)
        finished = False
        try:
            if payload is not None:
                self._send_stdin(shell_id, command_id, payload, label)
            exit_code = self._collect(shell_id, command_id, label, deadline, collector)
            finished = True
            return exit_code
        except ShellGone as exc:
            # The service deleted the shell under a running command (IdleTimeout, a
            # quota): the command died with it, but the target answers. Reconnect, so
            # the run can check what the command left (the engine settles a destructive
            # step by its resume_check), and say what happened.
            self._drop_shell()
            self._open_shell(connected=True)
            raise ShellGone(
                f"the WinRM service on {self._endpoint} deleted the shell while it ran "
                f"(IdleTimeout or a shell quota, see WSMan:\\localhost\\Shell): {label}; "
                "reconnected with a new shell"
            ) from exc
        except Disconnected:
            self._drop_shell()
            raise
        except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (the CLI raises it for both)
            # Ctrl-C or SIGTERM: stop watching, terminate nothing. A Signal or the shell's
            # Delete would kill what the command started in the shell's job, and a step
            # may be past the point of no return (Sysprep); `run --resume` settles it.
            # The shell is left to WinRM's idle timeout.
            self._abandon(label)
            raise
        finally:
            if self._shell_id == shell_id:
                self._signal(shell_id, command_id, finished=finished)

    def _start(self, encoded: str, label: str) -> tuple[str, str]:
        try:
            return self._start_once(encoded, label)
        except ShellGone:
            # The listener forgot our shell (service restart, reboot). The command never
            # started, so starting it once more in a new shell is safe.
            return self._start_once(encoded, label)

    def _start_once(self, encoded: str, label: str) -> tuple[str, str]:
        if self._protocol is None and not self._opened:
            raise Disconnected(f"not connected to {self._endpoint} (call connect first)")
        shell_id = self._shell_id or self._open_shell(connected=True)
        protocol = self._require_protocol()
        arguments = [*scripts.POWERSHELL_FLAGS, encoded]
        try:
            with self._errors(f"starting: {label}"):
                command_id: str = protocol.run_command(shell_id, scripts.POWERSHELL, arguments)
        except Disconnected:
            self._drop_shell()
            raise
        return shell_id, command_id

    def _send_stdin(self, shell_id: str, command_id: str, payload: bytes, label: str) -> None:
        protocol = self._require_protocol()
        chunks = scripts.stdin_chunks(payload)
        with self._errors(f"sending the script of: {label}"):
            for index, chunk in enumerate(chunks):
                protocol.send_command_input(
                    shell_id, command_id, chunk, end=index == len(chunks) - 1
                )

    def _collect(
        self,
        shell_id: str,
        command_id: str,
        label: str,
        deadline: float | None,
        collector: ShellOutputDecoder,
    ) -> int:
        protocol = self._require_protocol()
        try:
            while True:
                wait = self._options.operation_timeout
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise _DeadlinePassed
                    # A Receive blocks up to OperationTimeout, which pywinrm reads from
                    # this attribute for every request: shorten it near the deadline.
                    wait = max(1, min(wait, math.ceil(remaining)))
                protocol.operation_timeout_sec = wait
                with self._errors(f"running: {label}"):
                    try:
                        stdout, stderr, code, done = protocol.get_command_output_raw(
                            shell_id, command_id
                        )
                    except wex.WinRMOperationTimeoutError:
                        continue  # no output within OperationTimeout: normal, poll again
                collector.feed(stdout, stderr)
                if done:
                    return int(code)
        finally:
            protocol.operation_timeout_sec = self._options.operation_timeout

    def _signal(self, shell_id: str, command_id: str, *, finished: bool) -> None:
        """Signal terminate: frees a finished command, kills an unfinished one.

        Failures are logged, not raised: the command's outcome is already decided, and
        a target that vanished right after a shutdown command is expected.
        """
        protocol = self._require_protocol()
        try:
            with self._errors("signalling a command"):
                protocol.cleanup_command(shell_id, command_id)
        except Disconnected as exc:
            self._drop_shell()
            log.debug(
                "winrm.signal_failed", command_id=command_id, finished=finished, error=str(exc)
            )
        except TransportError as exc:
            log.debug(
                "winrm.signal_failed", command_id=command_id, finished=finished, error=str(exc)
            )

    def _require_protocol(self) -> Protocol:
        if self._protocol is None:
            raise Disconnected(f"not connected to {self._endpoint}")
        return self._protocol

    # -- files --------------------------------------------------------------------------

    def put(self, local: Path, remote: str, *, mode: int = 0o600) -> None:
        """Copy ``local`` to ``remote``, verified by SHA-256 on the target.

        ``mode`` is ignored: Windows files get the ACL of their folder. Meant for small
        files (answer files, scripts): the content is held in memory on both sides.
        """
        try:
            data = local.read_bytes()
        except OSError as exc:
            raise TransferError(f"cannot read {local}: {exc.strerror}") from exc
        label = f"put {remote}"
        collector = ShellOutputDecoder(self._options.codepage)
        bootstrap, payload = scripts.write_from_stdin(remote, data)
        try:
            code = self._execute(bootstrap, label, None, collector, payload=payload)
        except Disconnected:
            raise
        except TransportError as exc:
            raise TransferError(f"cannot copy {local} to {self._where(remote)}: {exc}") from exc
        output = collector.finish()
        if code != 0:
            raise TransferError(
                f"cannot copy {local} to {self._where(remote)}: {output.stderr.strip() or code}"
            )

    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` to ``local``, verified by SHA-256; a partial copy never lands."""
        what = f"cannot copy {self._where(remote)} to {local}"
        try:
            result = self.run(scripts.read_file(remote))
        except Disconnected:
            raise
        except TransportError as exc:
            raise TransferError(f"{what}: {exc}") from exc
        if result.exit_code != 0:
            raise TransferError(f"{what}: {result.stderr.strip() or result.exit_code}")
        lines = result.stdout.split()
        try:
            data = base64.b64decode(lines[0], validate=True) if lines else b""
        except binascii.Error as exc:
            raise TransferError(f"{what}: the content did not arrive as base64") from exc
        digest = lines[1] if len(lines) > 1 else ""
        if hashlib.sha256(data).hexdigest().upper() != digest.upper():
            raise TransferError(f"{what}: SHA-256 mismatch (got {len(data)} bytes)")
        partial = local.with_name(local.name + ".part")
        try:
            partial.write_bytes(data)
            partial.replace(local)
        except OSError as exc:
            raise TransferError(f"{what}: {exc.strerror}") from exc
        finally:
            partial.unlink(missing_ok=True)

    def _where(self, remote: str) -> str:
        return f"{self._target.host}:{remote}"

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Delete the shell (its processes end with it) and close the HTTP session."""
        self._release_vm_lock()
        protocol, shell_id = self._protocol, self._shell_id
        self._protocol, self._shell_id, self._opened = None, None, False
        if protocol is None:
            return
        try:
            if shell_id is not None:
                with self._errors("deleting the shell"):
                    protocol.close_shell(shell_id, close_session=False)
                log.debug("winrm.closed", endpoint=self._endpoint, shell=shell_id)
        except TransportError as exc:
            log.debug("winrm.close_failed", endpoint=self._endpoint, error=str(exc))
        finally:
            protocol.transport.close_session()


__all__ = ["WinRmExecutor"]
