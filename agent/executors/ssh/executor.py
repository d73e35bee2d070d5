"""SshExecutor: run commands on a Linux target over one SSH connection.

Layers a command passes through:

* ``become=False``: a new exec channel on the one connection; the login shell runs
  ``timeout -k 10 T /bin/bash -s``, the script arrives on stdin (see ``exec``).
* ``become=True``: the run's single root shell, opened on the first become command with
  sudo authenticated once, fed framed scripts (see ``rootshell``). It outlives the login
  user's deletion by ``waagent -deprovision+user``.

fabric's ``Connection`` opens the connection (without reading ~/.ssh/config or any fabric
config file, so every host behaves the same); channels and SFTP are used directly on its
paramiko transport. Host keys are checked by ``hostkeys``; every paramiko and socket
error is translated by ``errors``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import fabric
import paramiko
import structlog

from agent.errors import (
    CommandTimeout,
    Disconnected,
    TransferError,
    TransportError,
    UsageError,
)
from agent.excerpt import clip
from agent.executors.base import BaseExecutor, Exchanged, FollowUp, Output, OutputCallback
from agent.executors.ssh.channel import ChannelCollector, Finished
from agent.executors.ssh.errors import (
    TRANSPORT_FAILURES,
    Endpoint,
    map_command_errors,
    map_connect_errors,
    map_transfer_errors,
    reason,
)
from agent.executors.ssh.exec import (
    CLIENT_GRACE,
    KILL_AFTER,
    remote_timed_out,
    run_on_exec_channel,
)
from agent.executors.ssh.hostkeys import KnownHostsVerifier
from agent.executors.ssh.jump import HopAuth, JumpChain, open_jump_chain
from agent.executors.ssh.options import SshOptions
from agent.executors.ssh.rootshell import LOCK_BUSY, VM_LOCK_PATH, RootShell, open_root_shell
from agent.executors.ssh.tcp import open_tcp
from agent.secrets import Secret
from agent.targets import Target
from agent.vmlock import LockHolder, VmLockTaken, busy, taken

log = structlog.get_logger(__name__)

# An idle connection sends a keepalive this often; with TCP_USER_TIMEOUT (tcp.tune), a
# target that vanished without closing the connection is noticed within about half a minute.
KEEPALIVE_INTERVAL = 5
# After a channel ends without an exit status, how long to wait for the transport to die
# too (a power-off closes the session a moment before the connection).
_LOSS_SETTLE = 2.0
_COPY_CHUNK = 1 << 20
# A root shell reopened mid-run (the old one broke) may find the lock still held by the
# old one, whose bash lives until the command it was running ends: the step timer's
# KILL_AFTER grace (rootshell._timer_functions), and some slack.
_OWN_LOCK_WAIT = KILL_AFTER + 10


@dataclass(frozen=True)
class _AuthPlan:
    """What paramiko will try, in its order, and how to name it in an error."""

    pkey: paramiko.PKey | None
    password: str | None = field(repr=False)
    allow_agent: bool
    look_for_keys: bool
    methods: tuple[str, ...]


def _auth_plan(options: SshOptions) -> _AuthPlan:
    methods = []
    pkey = None
    if options.identity is not None:
        pkey = load_identity(options.identity, options.identity_passphrase)
        methods.append(f"publickey ({options.identity})")
    allow_agent = options.use_agent and bool(os.environ.get("SSH_AUTH_SOCK"))
    if allow_agent:
        methods.append("publickey (ssh-agent)")
    # ~/.ssh/id_* only when nothing was named: a given key or password must not be
    # preceded by whatever keys this machine happens to have (MaxAuthTries, surprises).
    look_for_keys = options.identity is None and options.password is None
    if look_for_keys:
        methods.append("publickey (~/.ssh/id_*)")
    if options.password is not None:
        methods.append(f"password ({options.password.source})")
    password = options.password.value if options.password is not None else None
    return _AuthPlan(pkey, password, allow_agent, look_for_keys, tuple(methods))


def load_identity(path: Path, passphrase: Secret | None = None) -> paramiko.PKey:
    """The private key in ``path``; UsageError (exit 2) for a key that cannot be used.

    The CLI calls this before a run starts, so a locked or broken key is a usage error
    naming --identity, not a failed connection. paramiko (through cryptography) says
    "encrypted, no password given" with TypeError for both OpenSSH and PEM keys, and a
    wrong passphrase of an OpenSSH-format key as a ValueError about PEM delimiters.
    """
    password = passphrase.value.encode("utf-8") if passphrase is not None else None
    try:
        # The stubs say str; paramiko 5 hands it to cryptography, which wants bytes.
        return paramiko.PKey.from_path(path, password=password)  # type: ignore[arg-type]
    except (TypeError, paramiko.PasswordRequiredException) as exc:
        if password is not None:
            # A passphrase for a key that has none: cryptography refuses it; use the key.
            return _load_unencrypted(path)
        raise UsageError(
            f"--identity {path} is passphrase-protected: give --identity-passphrase-env VAR "
            "or --identity-passphrase-file FILE, or load it into an SSH agent (ssh-add)"
        ) from exc
    except OSError as exc:
        raise UsageError(f"--identity {path}: cannot read it: {reason(exc)}") from exc
    except (paramiko.SSHException, paramiko.pkey.UnknownKeyType, ValueError) as exc:
        if password is not None and _is_encrypted(path):
            raise UsageError(
                f"--identity {path}: the passphrase given does not decrypt it"
            ) from None
        why = clip(reason(exc).split(". ")[0], 120)  # cryptography's first sentence
        raise UsageError(f"--identity {path} is not a usable private key: {why}") from None


def _load_unencrypted(path: Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except (OSError, TypeError, ValueError, paramiko.SSHException) as exc:
        raise UsageError(f"--identity {path} is not a usable private key: {reason(exc)}") from None


def _is_encrypted(path: Path) -> bool:
    """Whether the key file says it is encrypted (OpenSSH's cipher field or PEM headers)."""
    with contextlib.suppress(OSError):
        text = path.read_bytes()[: 64 * 1024]
        if b"ENCRYPTED" in text:  # PEM: "Proc-Type: 4,ENCRYPTED" or "ENCRYPTED PRIVATE KEY"
            return True
        body = b"".join(line for line in text.splitlines() if not line.startswith(b"-----"))
        with contextlib.suppress(ValueError):
            raw = base64.b64decode(body)
            # openssh-key-v1\0, then string ciphername; "none" means unencrypted.
            return raw.startswith(b"openssh-key-v1\x00") and raw[19:23] != b"none"
    return False


class SshExecutor(BaseExecutor):
    """Runs commands on one Linux target over one SSH connection (see module docstring)."""

    transport_name = "ssh"
    sends_ahead = True  # root commands, through the root shell's queue

    def __init__(self, target: Target, options: SshOptions) -> None:
        super().__init__(target)
        self._options = options
        self._where = Endpoint(target.user, target.host, target.port)
        self._conn: Any = None  # fabric.Connection (untyped)
        self._jumps: JumpChain | None = None
        self._transport: paramiko.Transport | None = None
        self._root: RootShell | None = None
        self._stale_dirs: list[str] = []
        # Set by hold_vm_lock: every root shell this run opens takes the VM's lock.
        self._lock_holder: LockHolder | None = None

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection (idempotent while it is up)."""
        if self.is_connected():
            return
        self.close()  # a dead earlier connection: drop what belonged to it
        auth = _auth_plan(self._options)
        verifier = KnownHostsVerifier(
            self._options.known_hosts,
            self._target.host,
            self._target.port,
            self._options.host_key_policy,
        )
        started = time.monotonic()
        timeout = self._options.connect_timeout
        sock: socket.socket | paramiko.Channel | None = self._open_jumps(auth)
        conn = None
        try:
            with map_connect_errors(self._where, methods=auth.methods, timeout=timeout):
                if sock is None:
                    sock = open_tcp(self._target.host, self._target.port, timeout=timeout)
                conn = self._fabric_connection(auth, verifier, sock)
                conn.open()
        except BaseException:
            if conn is not None:
                with contextlib.suppress(*TRANSPORT_FAILURES):
                    conn.client.close()
            if sock is not None:  # the client closes it only if its transport was made
                with contextlib.suppress(*TRANSPORT_FAILURES):
                    sock.close()
            self._close_jumps()
            raise
        self._conn = conn
        self._transport = conn.transport
        self._transport.set_keepalive(KEEPALIVE_INTERVAL)
        self._log_connected(time.monotonic() - started)

    def _open_jumps(self, auth: _AuthPlan) -> Any:
        """The socket to the target through the jump hosts, or None to connect directly."""
        if not self._options.jumps:
            return None
        self._jumps = open_jump_chain(
            self._options.jumps,
            self._where,
            auth=HopAuth(auth.pkey, auth.allow_agent, auth.look_for_keys, auth.methods),
            known_hosts=self._options.known_hosts,
            policy=self._options.host_key_policy,
            timeout=self._options.connect_timeout,
        )
        return self._jumps.channel

    def _close_jumps(self) -> None:
        if self._jumps is not None:
            self._jumps.close()
            self._jumps = None

    def _fabric_connection(
        self, auth: _AuthPlan, verifier: KnownHostsVerifier, sock: socket.socket | paramiko.Channel
    ) -> Any:
        timeout = self._options.connect_timeout

        def transport_factory(sock: Any, **kwargs: Any) -> paramiko.Transport:
            transport = paramiko.Transport(sock, **kwargs)
            verifier.prefer_known_types(transport)
            return transport

        # An explicit empty SSHConfig and lazy=True: no ~/.ssh/config, no /etc/ssh/ssh_config,
        # no fabric.yaml; gateway=False: no ProxyJump from any config (jumps come from --jump).
        config = fabric.Config(lazy=True, ssh_config=paramiko.SSHConfig())
        conn = fabric.Connection(
            host=self._target.host,
            user=self._target.user,
            port=self._target.port,
            config=config,
            gateway=False,
            forward_agent=False,
            connect_kwargs={
                "pkey": auth.pkey,
                "password": auth.password,
                "allow_agent": auth.allow_agent,
                "look_for_keys": auth.look_for_keys,
                "timeout": timeout,
                "banner_timeout": timeout,
                "auth_timeout": timeout,
                "channel_timeout": timeout,
                "transport_factory": transport_factory,
                # The TCP connection (tcp.py), or through jump hosts the last hop's
                # channel to the target.
                "sock": sock,
            },
        )
        conn.client.set_missing_host_key_policy(verifier.as_policy())
        return conn

    def _log_connected(self, duration: float) -> None:
        transport = self._require_transport()
        key = transport.get_remote_server_key()
        handler = transport.auth_handler
        log.info(
            "ssh.connected",
            host=self._target.host,
            port=self._target.port,
            user=self._target.user,
            auth=handler.auth_method if handler is not None else None,
            host_key_type=key.get_name(),
            host_key=key.fingerprint,
            duration_s=round(duration, 3),
        )

    def is_connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def wait_disconnected(self, timeout: float) -> bool:
        """True once the connection is gone (e.g. after a power-off), False on timeout."""
        deadline = time.monotonic() + timeout
        while self.is_connected():
            if time.monotonic() >= deadline:
                return False
            # Polled: paramiko has no event for a transport's end, and joining its thread
            # from the main thread is unsafe under Ctrl-C in Python 3.11 (bpo-45274's fix
            # marks a running thread stopped). 10 ms: a run ends when the VM goes, not up
            # to 50 ms later; each poll reads one attribute.
            time.sleep(0.01)
        return True

    def _require_transport(self) -> paramiko.Transport:
        if self._transport is None:
            raise Disconnected(f"not connected to {self._where.address} (call connect first)")
        return self._transport

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
        transport = self._require_transport()
        collector = ChannelCollector(on_output, stdout_sink)
        started = time.monotonic()
        with map_command_errors(self._where, label, connected=self.is_connected):
            if become:
                finished = self._root_shell(transport).run(
                    command, timeout=timeout, collector=collector, then=then
                )
            else:
                finished = run_on_exec_channel(
                    transport,
                    command,
                    timeout=timeout,
                    collector=collector,
                    open_timeout=self._options.connect_timeout,
                )
        # A command sent ahead ran from when the one before it ended, not from when asked.
        ready_at = started if finished.ready_at is None else finished.ready_at
        duration = time.monotonic() - ready_at
        output = collector.output()
        exit_code = self._check_finished(finished, label, duration, timeout, output)
        return Exchanged(exit_code, output)

    def _root_shell(self, transport: paramiko.Transport) -> RootShell:
        if self._root is not None and self._root.broken:
            self._stale_dirs.append(self._root.run_dir)
            self._root = None
        if self._root is None:
            self._root = open_root_shell(
                transport,
                where=self._where,
                sudo_password=self._options.sudo_password,
                stale_dirs=tuple(self._stale_dirs),
                timeout=self._options.connect_timeout,
            )
            self._stale_dirs.clear()
            if self._lock_holder is not None:
                retaken = self._take_vm_lock(self._root, self._lock_holder)
                if retaken.stale_holder is not None:
                    log.warning("vm_lock.stale", stale_holder=retaken.stale_holder.describe())
        return self._root

    # -- the lock on the VM (agent/vmlock.py) -------------------------------------------

    def hold_vm_lock(self, holder: LockHolder) -> VmLockTaken:
        """Take the VM's lock in the root shell; every root shell opened later retakes it."""
        transport = self._require_transport()
        self._lock_holder = None  # the shell opened here takes it below, once
        label = "taking the lock on the VM"
        with map_command_errors(self._where, label, connected=self.is_connected):
            got = self._take_vm_lock(self._root_shell(transport), holder)
        self._lock_holder = holder
        return got

    def _take_vm_lock(self, shell: RootShell, holder: LockHolder) -> VmLockTaken:
        status, answer = shell.take_vm_lock(holder.to_line(), wait=0)
        found = LockHolder.parse(answer.record) if status == LOCK_BUSY else None
        if found is not None and found.same_run_here(holder):
            # Our own earlier root shell, still ending the command it was running.
            status, answer = shell.take_vm_lock(holder.to_line(), wait=_OWN_LOCK_WAIT)
        if status == LOCK_BUSY:
            shell.close()
            self._root = None
            raise busy(self._target.display, VM_LOCK_PATH, LockHolder.parse(answer.record))
        if status != 0 or not answer.held:
            shell.mark_broken()
            raise TransportError(
                f"cannot take the lock on the VM {self._where.address}:{VM_LOCK_PATH} "
                f"(status {status}): {clip(answer.record, 200) or 'no message'}"
            )
        log.info("vm_lock.taken", host=self._where.address, path=VM_LOCK_PATH)
        return taken(VM_LOCK_PATH, holder, LockHolder.parse(answer.record))

    def _check_finished(
        self,
        finished: Finished,
        label: str,
        duration: float,
        timeout: float | None,
        output: Output,
    ) -> int:
        """The exit code, or CommandTimeout / Disconnected for a command that has none."""
        if timeout is not None and finished.client_timeout:
            raise CommandTimeout(
                f"command on {self._where.address} gave no result {timeout + CLIENT_GRACE:g} s "
                f"after its {timeout:g} s timeout (target not answering?): {label}",
                stdout=output.stdout,
                stderr=output.stderr,
            )
        if timeout is not None and remote_timed_out(finished.exit_code, duration, timeout):
            raise CommandTimeout(
                f"command timed out after {timeout:g} s on {self._where.address} "
                f"and was killed: {label}",
                stdout=output.stdout,
                stderr=output.stderr,
            )
        if finished.exit_code is None:
            raise self._lost(label)
        return finished.exit_code

    def _lost(self, label: str) -> Disconnected:
        if self.wait_disconnected(_LOSS_SETTLE):
            return Disconnected(f"connection to {self._where.address} lost while running: {label}")
        return Disconnected(
            f"the session on {self._where.address} ended without an exit status "
            f"(connection still up) while running: {label}"
        )

    # -- files --------------------------------------------------------------------------

    def put(self, local: Path, remote: str, *, mode: int = 0o600) -> None:
        """Copy ``local`` to ``remote`` (as the login user), created with ``mode``."""
        what = f"cannot copy {local} to {self._where.address}:{remote}"
        with map_transfer_errors(f"cannot read {local}"):
            source = local.open("rb")
        with source, map_transfer_errors(what):
            sftp = self._sftp()
            with sftp.open(remote, "wb") as target:
                # Before the first byte: the content is never readable with looser rights.
                target.chmod(mode)
                target.set_pipelined(True)
                shutil.copyfileobj(source, target, _COPY_CHUNK)

    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` to ``local``; a partial download never takes the final name."""
        partial = local.with_name(local.name + ".part")
        try:
            with map_transfer_errors(f"cannot copy {self._where.address}:{remote} to {local}"):
                with self._sftp().open(remote, "rb") as source, partial.open("wb") as target:
                    source.prefetch()
                    shutil.copyfileobj(source, target, _COPY_CHUNK)
                partial.replace(local)
        finally:
            partial.unlink(missing_ok=True)

    def _sftp(self) -> paramiko.SFTPClient:
        self._require_transport()
        if not self.is_connected():
            raise TransferError(f"the connection to {self._where.address} is gone")
        sftp: paramiko.SFTPClient = self._conn.sftp()
        return sftp

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Exit the root shell (removing its directory) and close the connection."""
        if self._root is not None:
            self._root.close()
            self._root = None
        if self._conn is not None:
            with contextlib.suppress(*TRANSPORT_FAILURES):
                self._conn.close()
            with contextlib.suppress(*TRANSPORT_FAILURES):
                self._conn.client.close()
            log.debug("ssh.closed", host=self._where.address)
        self._close_jumps()
        self._conn = None
        self._transport = None


__all__ = ["SshExecutor", "load_identity"]
