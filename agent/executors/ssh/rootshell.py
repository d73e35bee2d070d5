"""One long-lived root shell per run, on its own channel.

Why: sudo costs about 47 ms per password check and a new connection about 0.23 s, and
``waagent -deprovision+user`` deletes the login user mid-run, after which every new
``sudo`` fails ("you do not exist in the passwd database") while the verify steps and the
power-off still need root. A root bash started once, before that, keeps working.

Start-up: ``sudo -S -p PROMPT -- bash -c 'echo READY; exec bash'``. The password is
written only after sudo shows our per-run prompt on stderr, so it can never reach bash
as a command line when sudoers says NOPASSWD; a second prompt means it was refused.
``sudo -n`` is used when no sudo password was given, plain bash when the login user is
root. ``LC_ALL=C`` keeps sudo's messages (and PAM's prompt) in English.

Each command is sent as ``__ip_run SEQ TIMEOUT ENCODING GATE 3<<'IPH-NONCE'`` followed by
the script, and run as ``( . FILE ) </dev/null``: a subshell of the root shell, in a process
group of its own, which the shell's timer kills at the timeout as ``timeout -k 10 T``
would (``_timer_functions``); the script's stdin is never the script. A subshell, not
``/bin/bash FILE``: a fork is about 0.4 ms on a Debian 12 target, a fork and exec of
bash about 1.8 ms, and every step pays it (a trivial step: 2.75 against 3.8 ms). What a
step changes (variables, options, its directory, ``exit``) ends with its subshell; it has
no job control and none of the shell's descriptors. Unlike a new bash it sees the shell's
own ``__ip_*`` functions and variables, and ``$$`` and ``$PPID`` are the root shell's
(``$BASHPID`` is the step's own). The same protocol was driven through bash 4.4.19 (RHEL 8
and SLES 15 ship 4.4) outside the suite, with the same results as 5.2: exit codes, 124 and
137 at the timeout, output, ``trap EXIT``, a step's changes not reaching the next.

A script of up to 4 KiB (every built-in step) goes as it is (``raw``) and is read from
the here-document itself, ``/dev/fd/3``: no file and no program per step. A longer
script, or one holding a NUL or the delimiter, goes in base64 (``b64``: its alphabet has
no ``-``) and is written to ``/run/imageprep-NONCE/step`` (0700, root only; not /tmp,
which the cleanup steps wipe), which is emptied after it ran. The delimiter holds the
shell's random nonce, so no script contains it by accident. (A raw script's commands
inherit descriptor 3, the here-document's pipe: bash has written all of it before the
script starts, so nothing waits on it.) The output is framed on both streams::

    stdout: \\nIPB-NONCE-SEQ\\n <output> \\nIPE-NONCE-SEQ <rc>\\n
    stderr: \\nIPB-NONCE-SEQ\\n <output> \\nIPE-NONCE-SEQ\\n

The newline before each end marker is always added, so exactly one is stripped and the
output is byte-exact. A request its gate skipped ends with ``skip`` instead of an exit code.
Anything before the begin marker (output a background process of an earlier command wrote
late) is dropped. A shell whose framing breaks or whose command outlives the client
deadline is closed and marked broken; the next become call opens a new one (the sudo
password stays in memory for that).

Sending ahead: the commands a caller will run next (``Executor.run``'s ``then``) are
written behind the current one at once, up to AHEAD_MAX_REQUESTS and AHEAD_MAX_BYTES, so
bash reads each the moment the one before it ends: over a link of 20 ms a phase of
trivial steps costs one round trip instead of one per step. GATE says whether it may
start: ``-`` always, ``any`` if the request before it ran, or a list of exit codes the one
before must have ended with; a skipped request skips all behind it. The caller's next run
of the queue's head only collects it (and sends it again, ungated, if it was skipped);
anything else first collects the queue, each of which must have been skipped. Once sshd
has the channel's close (Ctrl-C, a broken shell), nothing queued starts any more; what
started before it is reported as "may have run" (agent.recorder).
"""

from __future__ import annotations

import base64
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import paramiko
import structlog

from agent.errors import PrivilegeError, TransportError, UsageError
from agent.executors.base import FollowUp, first_line
from agent.executors.ssh.channel import (
    ChannelCollector,
    Finished,
    Stream,
    drained,
    passed,
    receive,
    remaining,
)
from agent.executors.ssh.errors import TRANSPORT_FAILURES, Endpoint
from agent.executors.ssh.exec import KILL_AFTER, client_deadline, timeout_arg
from agent.secrets import Secret

log = structlog.get_logger(__name__)

Mode = Literal["root-login", "sudo-nopasswd", "sudo-password"]

_SHELL = "/bin/bash --noprofile --norc"
# The lock on the VM (agent/vmlock.py): a file on /run, a tmpfs, so it never reaches the
# image; held with flock(1) on a descriptor of the root shell itself, which every command
# the shell starts gets closed (a daemon a step leaves behind must not keep the lock).
VM_LOCK_PATH = "/run/imageprep-vm.lock"
_LOCK_FD = 219
_CLOSE_LOCK_FD = f"{_LOCK_FD}>&-"
# flock -E: the exit status for "held by someone else" (EX_TEMPFAIL), told apart from
# flock's own errors and from a missing flock (127).
LOCK_BUSY = 75
# How long close() waits for the shell to remove its directory and exit.
_CLOSE_WAIT = 2.0


@dataclass(frozen=True)
class Tokens:
    """The per-shell random markers; nothing a command could print by accident."""

    nonce: str

    @property
    def ready(self) -> bytes:
        return f"IPR-{self.nonce}\n".encode()

    @property
    def prompt(self) -> bytes:
        return f"IPP-{self.nonce}:".encode()

    @property
    def initialised(self) -> bytes:
        return f"IPI-{self.nonce}\n".encode()

    @property
    def heredoc(self) -> str:
        return f"IPH-{self.nonce}"

    @property
    def run_dir(self) -> str:
        return f"/run/imageprep-{self.nonce}"

    def begin(self, seq: int) -> bytes:
        return f"IPB-{self.nonce}-{seq}\n".encode()

    def end(self, seq: int, stream: Literal["stdout", "stderr"]) -> bytes:
        return f"\nIPE-{self.nonce}-{seq}{' ' if stream == 'stdout' else chr(10)}".encode()


def start_command(tokens: Tokens, mode: Mode) -> str:
    ready = f"-c 'echo {tokens.ready.decode().strip()}; exec {_SHELL}'"
    if mode == "root-login":
        return f"{_SHELL} {ready}"
    if mode == "sudo-nopasswd":
        return f"env LC_ALL=C sudo -n -- {_SHELL} {ready}"
    return f"env LC_ALL=C sudo -S -p '{tokens.prompt.decode()}' -- {_SHELL} {ready}"


# Up to this size a script goes as it is, in its here-document; a longer one is sent in
# base64 and written to a file first (heredoc_payload).
RAW_SCRIPT_MAX = 4096


def heredoc_payload(script: str, delimiter: str, *, raw: bool = True) -> tuple[str, bytes]:
    """The here-document body for ``script``: ("raw", its bytes) or ("b64", base64).

    Raw only if wanted, at most RAW_SCRIPT_MAX bytes, and holding no NUL (bash cannot
    read one from a script) and no delimiter (the here-document would end there). The
    body ends in a newline: a raw script gains one if it lacked it, which changes nothing
    bash runs.
    """
    data = script.encode("utf-8")
    fits = len(data) <= RAW_SCRIPT_MAX and b"\0" not in data
    if raw and fits and delimiter.encode("ascii") not in data:
        return "raw", data if data.endswith(b"\n") else data + b"\n"
    return "b64", base64.encodebytes(data)


def init_script(tokens: Tokens, stale_dirs: tuple[str, ...]) -> bytes:
    """Defines ``__ip_run``, starts the step timer and creates the script directory.

    Prints the init marker last.
    """
    n, d = tokens.nonce, tokens.run_dir
    script = f"'{d}/step'"
    # set +m: the step's own background jobs stay in its process group, which the timer kills.
    run = f'( set +m; exec </dev/null {_CLOSE_LOCK_FD} {{__ip_w}}>&-; . "$2" )'
    stale = "".join(f"rm -rf -- '{s}'\n" for s in stale_dirs)
    return (
        # The login user's home may be deleted mid-run (deprovision): stay out of it.
        "cd / || exit 96\n"
        "unset LC_ALL\n"
        f"mkdir -m 0700 -- '{d}' || exit 97\n"
        f"{stale}"
        # A request sent ahead must not run once the client has let go: sshd shuts the
        # channel's stdout on its close, so writing the begin marker kills the shell
        # (SIGPIPE); were SIGPIPE ignored, the failed write ends it.
        "__ip_run() {\n"
        f"  printf '\\n%s\\n' \"IPB-{n}-$1\" || exit 95\n"
        f"  printf '\\n%s\\n' \"IPB-{n}-$1\" >&2\n"
        '  if __ip_gate "$4"; then\n'
        '    if [ "$3" = raw ]; then __ip_exec "$2" /dev/fd/3; else __ip_b64 "$2"; fi\n'
        "    __ip_prev=$?\n"
        "  else\n"
        "    __ip_prev=skip\n"
        "  fi\n"
        f'  printf \'\\n%s %s\\n\' "IPE-{n}-$1" "$__ip_prev"\n'
        f"  printf '\\n%s\\n' \"IPE-{n}-$1\" >&2\n"
        "}\n"
        # GATE: - (none), any (the request before ran, whatever its exit code) or a
        # comma-separated list of exit codes (it ran and exited with one of them).
        "__ip_prev=skip\n"
        "__ip_gate() {\n"
        '  case "$1" in\n'
        "    -) return 0 ;;\n"
        '    any) [ "$__ip_prev" != skip ] ;;\n'
        '    *) case ",$1," in *",$__ip_prev,"*) return 0 ;; *) return 1 ;; esac ;;\n'
        "  esac\n"
        "}\n"
        "__ip_b64() {\n"
        f'  base64 -d <&3 >|{script} && __ip_exec "$1" {script}\n'
        f'  set -- "$?"; : >|{script}; return "$1"\n'
        "}\n"
        f"{_timer_functions(tokens, run)}"
        f"{_lock_functions(tokens)}"
        f"printf '%s\\n' 'IPI-{n}'\n"
    ).encode()


def _timer_functions(tokens: Tokens, run: str) -> str:
    """``__ip_exec TIMEOUT FILE`` runs a step; a timer process kills it at its timeout.

    What ``timeout -k 10 T`` did, without starting timeout(1) for every step: that cost
    about 1 ms a step (3.7 against 2.7 ms for a trivial root step on a Debian 12 target),
    the largest cost a step had over the same commands in one script.

    * ``set -m``: every background job gets a process group of its own (bash manual,
      "Job Control Basics"; without a terminal too: bash 4.4's set_job_control turns
      it on unconditionally, and the tests run 5.2), so the step and whatever it
      started are killed together, as timeout(1) kills its group.
    * ``__ip_watch``, the timer, is one subshell for the shell's life that uses builtins
      only. It reads ``PID SECONDS`` when a step starts and ``done`` when it ended;
      ``read -t`` ends with a status above 128 when its time is up (bash manual, "read").
      Then it writes the PID to ``fired``, sends TERM to the group and, KILL_AFTER
      seconds later, KILL.
    * The step then ends as under timeout(1): status 124, or 137 if KILL was needed. A
      ``fired`` holding another PID is a late timer of an earlier step (one that ended
      just at its time) and is ignored.
    * If the shell itself is gone mid-step (killed; a lost connection leaves it waiting
      in ``wait``), the timer still kills the step at its time, to the second. Not if the
      shell died between starting the step and writing its line to the timer (a window
      that is microseconds on an idle host, longer on a loaded one): the timer never
      learns of that step.

    Without a timeout the step runs in the foreground, as before.
    """
    fired = f"'{tokens.run_dir}/fired'"
    return (
        "__ip_watch() {\n"
        "  while read -r __ip_p __ip_t; do\n"
        '    __ip_late "$__ip_t" || continue\n'
        f"    printf '%s\\n' \"$__ip_p\" >|{fired}\n"
        '    kill -TERM -- "-$__ip_p"\n'
        # After a KILL the shell's "done" is still to come: read it, or the next step's
        # start would be taken for it.
        f'    if __ip_late {KILL_AFTER}; then kill -KILL -- "-$__ip_p"; read -r _; fi\n'
        "  done\n"
        "}\n"
        "__ip_late() {  # SECONDS: true if no 'done' came within them\n"
        '  local started=$SECONDS left; read -r -t "$1" _; set -- "$1" "$?"\n'
        '  if [ "$2" -eq 0 ]; then return 1; fi\n'
        '  if [ "$2" -le 128 ]; then  # end of input: the shell is gone, the step may not be\n'
        "    left=$(( ${1%.*} + 1 - (SECONDS - started) ))\n"
        '    if [ "$left" -gt 0 ]; then sleep "$left"; fi\n'
        "  fi\n"
        "}\n"
        "exec {__ip_w}> >(__ip_watch >/dev/null 2>&1)\n"
        "set -m\n"
        "__ip_exec() {  # TIMEOUT FILE\n"
        f'  if [ -z "$1" ]; then {run}; return; fi\n'
        f"  {run} &\n"
        '  __ip_p=$!; printf \'%s %s\\n\' "$__ip_p" "$1" >&"$__ip_w"\n'
        # Without 2>/dev/null bash would report a job killed by a signal ("Terminated").
        '  wait "$__ip_p" 2>/dev/null; set -- "$?"\n'
        "  printf 'done\\n' >&\"$__ip_w\"\n"
        f"  if [ -s {fired} ]; then\n"
        f"    read -r __ip_f <{fired}; : >|{fired}\n"
        '    if [ "$__ip_f" = "$__ip_p" ] && [ "$1" != 137 ]; then set -- 124; fi\n'
        "  fi\n"
        '  return "$1"\n'
        "}\n"
    )


def _lock_functions(tokens: Tokens) -> str:
    """``__ip_lock SEQ WAIT`` takes the VM's lock; ``__ip_unlock`` empties and drops it.

    Both run in the shell itself (not in a child), so the descriptor, and with it the
    flock, belongs to the shell. ``__ip_lock`` reads the holder record (base64) on descriptor 3;
    it prints ``held`` or ``busy`` and then the record that was in the file, framed like
    ``__ip_run``; its status is 0 (held), 75 (busy) or an error. WAIT: seconds.
    """
    n, f, lock = tokens.nonce, _LOCK_FD, VM_LOCK_PATH
    return (
        "__ip_lock() {\n"
        f"  printf '\\n%s\\n' \"IPB-{n}-$1\"; printf '\\n%s\\n' \"IPB-{n}-$1\" >&2\n"
        "  __ip_rec=$(base64 -d <&3)\n"
        f"  if ! exec {f}<>'{lock}'; then set -- \"$1\" 90\n"
        f'  elif flock -w "$2" -E {LOCK_BUSY} {f}; then\n'
        f"    chmod 0600 -- '{lock}'; printf 'held\\n'; cat -- '{lock}'\n"
        f"    if printf '%s\\n' \"$__ip_rec\" >|'{lock}'; then __ip_locked=1; set -- \"$1\" 0\n"
        '    else set -- "$1" 91; fi\n'
        "  else\n"
        # $? here is the status of the elif's flock.
        f"    set -- \"$1\" \"$?\"; exec {f}>&-; printf 'busy\\n'; cat -- '{lock}'\n"
        "  fi\n"
        f'  printf \'\\n%s %s\\n\' "IPE-{n}-$1" "$2"; printf \'\\n%s\\n\' "IPE-{n}-$1" >&2\n'
        "}\n"
        "__ip_unlock() {\n"
        f"  if [ -n \"${{__ip_locked-}}\" ]; then : >|'{lock}'; exec {f}>&-; __ip_locked=; fi\n"
        "}\n"
    )


@dataclass(frozen=True)
class LockAnswer:
    """What ``__ip_lock`` found: whether the lock is ours now, and the record in the file."""

    held: bool
    record: str


class Framer:
    """Cuts one command's output out of one stream of the root shell.

    Markers may arrive split across reads, so up to ``len(marker) - 1`` bytes are held
    back until it is clear they are not the start of a marker.
    """

    def __init__(self, begin: bytes, end: bytes, *, trailer: bool) -> None:
        self._begin = begin
        self._end = end
        self._state: Literal["begin", "body", "trailer", "done"] = "begin"
        self._trailer_wanted = trailer
        self._buf = b""
        self.trailer = b""

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> bytes:
        """Take ``data``; return the part of it that is the command's output."""
        if not data:
            return b""
        self._buf += data
        if self._state == "done":
            return b""
        if self._state == "begin" and not self._skip_to_begin():
            return b""
        payload = self._take_body() if self._state == "body" else b""
        if self._state == "trailer":
            self._take_trailer()
        return payload

    def flush(self) -> bytes:
        """The output held back so far, for a command that will never end its frame."""
        held, self._buf = (self._buf if self._state == "body" else b""), b""
        return held

    def _skip_to_begin(self) -> bool:
        i = self._buf.find(self._begin)
        if i < 0:
            self._buf = self._buf[-(len(self._begin) - 1) :]
            return False
        self._buf = self._buf[i + len(self._begin) :]
        self._state = "body"
        return True

    def _take_body(self) -> bytes:
        i = self._buf.find(self._end)
        if i < 0:
            cut = max(0, len(self._buf) - (len(self._end) - 1))
            payload, self._buf = self._buf[:cut], self._buf[cut:]
            return payload
        payload, self._buf = self._buf[:i], self._buf[i + len(self._end) :]
        self._state = "trailer" if self._trailer_wanted else "done"
        return payload

    def _take_trailer(self) -> None:
        i = self._buf.find(b"\n")
        if i >= 0:
            self.trailer, self._buf = self._buf[:i], self._buf[i + 1 :]
            self._state = "done"

    @property
    def rest(self) -> bytes:
        """What came after the frame: the next command's output, or a background process's
        late output, which the next frame drops with everything before its begin marker."""
        return self._buf if self._state == "done" else b""


@dataclass(frozen=True)
class _Queued:
    """A request sent ahead and not yet collected: its sequence number and what it runs."""

    seq: int
    script: str
    timeout: float | None
    size: int


# What may wait on the target at once, sent ahead: the shell's stdin pipe holds 64 KiB
# (pipe(7)), so this much never makes sendall wait on a window while nobody reads.
AHEAD_MAX_REQUESTS = 16
AHEAD_MAX_BYTES = 32 * 1024
_SKIPPED = b"skip"


class RootShell:
    """A started root shell. Use :func:`open_root_shell` to get one."""

    def __init__(self, chan: paramiko.Channel, tokens: Tokens) -> None:
        self._chan = chan
        self._tokens = tokens
        self._seq = 0
        self.broken = False
        self._queued: deque[_Queued] = deque()
        # When the last frame was seen to end: a request sent ahead started no earlier.
        self._frame_ended = time.monotonic()
        # Output read past the end of a frame: the start of the next one's.
        self._rest: dict[Stream, bytes] = {"stdout": b"", "stderr": b""}

    @property
    def run_dir(self) -> str:
        return self._tokens.run_dir

    def run(
        self,
        script: str,
        *,
        timeout: float | None,
        collector: ChannelCollector,
        then: Sequence[FollowUp] = (),
        function: str = "__ip_run",
    ) -> Finished:
        """Run ``script`` as root; ``exit_code`` None means the shell ended mid-command.

        ``then``: the commands the caller will run next (``Executor.run``). Those not yet
        on their way are sent behind this one, gated by ``__ip_gate``, so the shell starts
        each the moment the one before it ends. A later ``run`` of the head of that queue
        only collects it; one that was skipped by its gate is sent again, ungated.
        """
        try:
            seq = self._claim(script, timeout) if function == "__ip_run" else None
            ready_at = self._frame_ended if seq is not None else None
            if seq is None:
                seq = self._send_now(script, timeout, function)
            self._send_ahead(then)
            finished = self._collect(seq, collector, timeout)
            if finished is None:  # it was skipped: the command before it failed its gate
                seq, ready_at = self._send_now(script, timeout, function), None
                self._send_ahead(then)
                finished = self._collect(seq, collector, timeout)
        except BaseException:
            self.mark_broken()
            raise
        assert finished is not None  # an ungated request is never skipped
        return replace(finished, ready_at=ready_at)

    def _claim(self, script: str, timeout: float | None) -> int | None:
        """The sequence number of ``script`` if it is the next request sent ahead."""
        if self._queued and (self._queued[0].script, self._queued[0].timeout) == (
            script,
            timeout,
        ):
            return self._queued.popleft().seq
        return None

    def _send_now(self, script: str, timeout: float | None, function: str) -> int:
        """Send an ungated request, after collecting whatever was sent ahead and not claimed."""
        self._settle_queue()
        self._seq += 1
        self._chan.sendall(self._request(self._seq, script, timeout, function, gate="-"))
        return self._seq

    def _send_ahead(self, then: Sequence[FollowUp]) -> None:
        """Queue the follow-ups not already on their way, as far as the limits allow."""
        queued = list(self._queued)
        if any(
            (q.script, q.timeout) != (f.command, f.timeout)
            for q, f in zip(queued, then, strict=False)
        ):
            return  # not the queue's continuation: send nothing (any prefix is allowed)
        room = AHEAD_MAX_BYTES - sum(q.size for q in queued)
        requests = bytearray()
        for follow in then[len(queued) : AHEAD_MAX_REQUESTS]:
            gate = "any" if follow.after is None else ",".join(map(str, follow.after))
            request = self._request(self._seq + 1, follow.command, follow.timeout, "__ip_run", gate)
            if len(request) > room:
                break
            self._seq += 1
            room -= len(request)
            requests += request
            self._queued.append(_Queued(self._seq, follow.command, follow.timeout, len(request)))
        if requests:
            self._chan.sendall(bytes(requests))

    def _settle_queue(self) -> None:
        """Collect the requests sent ahead that nobody claimed: each must have been skipped.

        The caller sends a command ahead only if it will run it next whenever its gate
        passes, so one that ran without being asked for is a bug of ours, and its output
        is lost: say so rather than go on as if it had not run.
        """
        while self._queued:
            queued = self._queued.popleft()
            ran = self._collect(queued.seq, ChannelCollector(None, None), queued.timeout)
            if ran is None:
                continue
            if ran.exit_code is None:  # no frame came: the shell is gone, and marked broken
                raise TransportError(
                    "the root shell ended before it reported on a command sent ahead: "
                    f"{first_line(queued.script)}"
                )
            raise TransportError(
                "a command sent ahead ran although the run did not go on to it "
                f"(a bug in imageprep): {first_line(queued.script)}"
            )

    def _collect(
        self, seq: int, collector: ChannelCollector, timeout: float | None
    ) -> Finished | None:
        """Read request ``seq``'s frames; None if its gate skipped it."""
        out = Framer(self._tokens.begin(seq), self._tokens.end(seq, "stdout"), trailer=True)
        err = Framer(self._tokens.begin(seq), self._tokens.end(seq, "stderr"), trailer=False)
        collector.add("stdout", out.feed(self._rest["stdout"]))
        collector.add("stderr", err.feed(self._rest["stderr"]))
        finished = self._pump(out, err, collector, client_deadline(timeout))
        self._rest = {"stdout": out.rest, "stderr": err.rest}
        self._frame_ended = time.monotonic()
        if finished is not None:
            return finished
        if out.trailer.strip() == _SKIPPED:
            return None
        return Finished(exit_code=self._exit_code(out.trailer))

    def _request(
        self, seq: int, script: str, timeout: float | None, function: str, gate: str
    ) -> bytes:
        limit = timeout_arg(timeout) if timeout is not None else "''"
        here = self._tokens.heredoc
        # __ip_lock reads its record with base64 -d; only __ip_run takes a raw script.
        encoding, payload = heredoc_payload(script, here, raw=function == "__ip_run")
        # On descriptor 3, not stdin: bash 4.4 (RHEL 8, SLES 15) aborts ("malloc: assertion
        # botched", seen with 4.4.19 built from bminor/bash) when a function whose stdin is a
        # here-document duplicates it (3<&0) while the shell reads its commands from stdin.
        head = f"{function} {seq} {limit} {encoding} {gate} 3<<'{here}'\n".encode("ascii")
        return head + payload + f"{here}\n".encode("ascii")

    def take_vm_lock(self, record: str, *, wait: float) -> tuple[int | None, LockAnswer]:
        """Take the VM's lock for this shell's life: (status, answer); see ``__ip_lock``.

        ``wait``: how long flock waits for a holder to let go (timeout_arg makes 0 into
        a millisecond: an answer at once).
        """
        collector = ChannelCollector(None, None)
        finished = self.run(record, timeout=wait, collector=collector, function="__ip_lock")
        output = collector.output()
        state, _, found = output.stdout.partition("\n")
        answer = LockAnswer(held=finished.exit_code == 0 and state == "held", record=found)
        if finished.exit_code not in (0, LOCK_BUSY):
            return finished.exit_code, LockAnswer(False, output.stderr.strip())
        return finished.exit_code, answer

    def _pump(
        self, out: Framer, err: Framer, collector: ChannelCollector, deadline: float | None
    ) -> Finished | None:
        # A command sent ahead may have ended in what was read for the one before it: look
        # before waiting, or the wait would last until the poll interval.
        while not (out.done and err.done):
            got = receive(self._chan, remaining(deadline))
            collector.add("stdout", out.feed(got.stdout))
            collector.add("stderr", err.feed(got.stderr))
            if out.done and err.done:
                break
            ended = drained(self._chan)
            if ended or passed(deadline):
                # Partial output is reported with the error: hand over what was held back.
                collector.add("stdout", out.flush())
                collector.add("stderr", err.flush())
                self.mark_broken()
                return Finished(exit_code=None, client_timeout=not ended)
        return None

    def _exit_code(self, trailer: bytes) -> int:
        try:
            return int(trailer.strip())
        except ValueError:
            self.mark_broken()
            raise TransportError(
                "lost track of the root shell's output (unexpected end marker); "
                "a new root shell will be opened for the next command"
            ) from None

    def mark_broken(self) -> None:
        """Stop using this shell: close its channel (its bash exits at EOF).

        A request sent ahead that has not started by the time sshd has the channel's
        close never starts: sshd shuts the shell's stdout, and ``__ip_run`` ends the shell
        when its begin marker cannot be written, before it looks at its gate.
        """
        self.broken = True
        self._queued.clear()
        self._chan.close()

    def close(self) -> None:
        """Remove the script directory and exit the shell; never raises transport errors."""
        if not self.broken and not self._chan.closed:
            try:
                self._chan.sendall(
                    f"__ip_unlock; cd / && rm -rf -- '{self.run_dir}'; exit 0\n".encode()
                )
                self._chan.shutdown_write()
                self._chan.status_event.wait(_CLOSE_WAIT)
            except TRANSPORT_FAILURES as exc:
                log.debug("ssh.root_shell_close_failed", error=str(exc))
        self.broken = True
        self._chan.close()


def root_shell_mode(login_user: str, sudo_password: Secret | None) -> Mode:
    if login_user == "root":
        return "root-login"
    return "sudo-nopasswd" if sudo_password is None else "sudo-password"


def open_root_shell(
    transport: paramiko.Transport,
    *,
    where: Endpoint,
    sudo_password: Secret | None,
    stale_dirs: tuple[str, ...],
    timeout: float,
) -> RootShell:
    """Start the root shell; PrivilegeError (with sudo's own words) if sudo refuses."""
    if sudo_password is not None and ("\n" in sudo_password.value or "\r" in sudo_password.value):
        raise UsageError(f"sudo password from {sudo_password.source} contains a line break")
    tokens = Tokens(secrets.token_hex(8))
    mode = root_shell_mode(where.user, sudo_password)
    started = time.monotonic()
    chan = transport.open_session(timeout=timeout)
    try:
        chan.exec_command(start_command(tokens, mode))
        deadline = started + timeout
        _await_root(chan, tokens, _Sudo(where, sudo_password, mode), deadline)
        chan.sendall(init_script(tokens, stale_dirs))
        _await_init(chan, tokens, where, deadline)
    except BaseException:
        chan.close()
        raise
    log.info(
        "ssh.root_shell_opened",
        host=where.address,
        via=mode,
        run_dir=tokens.run_dir,
        duration_s=round(time.monotonic() - started, 3),
    )
    return RootShell(chan, tokens)


@dataclass(frozen=True)
class _Sudo:
    """What the start-up needs to talk to sudo and to word its refusals."""

    where: Endpoint
    password: Secret | None
    mode: Mode

    def refusal(self, what: str, stderr: bytes | bytearray, tokens: Tokens) -> PrivilegeError:
        text = stderr.replace(tokens.prompt, b"\n").decode("utf-8", errors="replace")
        said = " / ".join(line.strip() for line in text.splitlines() if line.strip())
        if self.password is not None:  # sudo never echoes it; belt and braces
            said = said.replace(self.password.value, "<redacted>")
        message = f"cannot become root on {self.where.login}: {what}"
        return PrivilegeError(f"{message}: {said}" if said else message)


def _await_root(chan: paramiko.Channel, tokens: Tokens, sudo: _Sudo, deadline: float) -> None:
    out, err = bytearray(), bytearray()
    answered = False
    while tokens.ready not in out:
        got = receive(chan, remaining(deadline))
        out += got.stdout
        err += got.stderr
        prompts = err.count(tokens.prompt)
        if prompts > 1:
            raise sudo.refusal(f"sudo refused the password from {_source(sudo)}", err, tokens)
        if prompts == 1 and not answered:
            assert sudo.password is not None  # a prompt only appears in sudo -S mode
            chan.sendall(sudo.password.value.encode("utf-8") + b"\n")
            answered = True
        if tokens.ready in out:
            break
        if drained(chan):
            raise sudo.refusal(_closed_reason(sudo), err, tokens)
        if passed(deadline):
            raise sudo.refusal("sudo did not start a root shell in time", err, tokens)


def _source(sudo: _Sudo) -> str:
    return sudo.password.source if sudo.password is not None else "nowhere"


def _closed_reason(sudo: _Sudo) -> str:
    if sudo.mode == "sudo-nopasswd":
        return "sudo -n refused (if it needs a password, give --sudo-password-env/-file)"
    return "sudo refused"


def _await_init(chan: paramiko.Channel, tokens: Tokens, where: Endpoint, deadline: float) -> None:
    err = bytearray()
    out = bytearray()
    while tokens.initialised not in out:
        got = receive(chan, remaining(deadline))
        out += got.stdout
        err += got.stderr
        if tokens.initialised in out:
            return
        if drained(chan) or passed(deadline):
            said = err.decode("utf-8", errors="replace").strip()
            raise TransportError(
                f"the root shell on {where.address} failed to set up {tokens.run_dir}: {said}"
            )
