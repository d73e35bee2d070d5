"""Non-root commands: one fresh exec channel per command on the shared connection.

The remote command line is fixed and short (``timeout -k 10 T /bin/bash -s; exit $?``);
the script travels on stdin as ``{ :; <script>\n} </dev/null``. Why stdin and not argv:

* bash parses the whole ``{ ... }`` group before running any of it, and the group's
  stdin is /dev/null, so no command in the script can swallow the rest of the script;
* no argv length limit (128 KiB per argument on Linux), no quoting through whatever the
  user's login shell is, and the script text never shows up in ``ps``.

``timeout`` puts itself and the script in a new process group and kills that whole group
(TERM, then KILL 10 s later). The trailing ``; exit $?`` keeps the login shell as the
channel's process so there is always an exit status: when ``timeout`` dies of a signal,
sshd would otherwise send only an exit-signal, which paramiko ignores.
"""

from __future__ import annotations

import time

import paramiko

from agent.executors.ssh.channel import (
    ChannelCollector,
    Finished,
    drained,
    passed,
    receive,
    remaining,
)

# timeout(1), and the root shell's step timer (rootshell._timer_functions), wait this long
# after TERM before they send KILL.
KILL_AFTER = 10
# The client gives up this long after the command's own timeout: the remote kill must
# have had its chance first, so a client-side timeout means the target stopped answering.
CLIENT_GRACE = KILL_AFTER + 5
# After EOF, how long to wait for the exit status that follows it.
_STATUS_WAIT = 5.0
# What timeout(1) returns when it killed the command (the root shell's timer returns the
# same): TERM worked, or KILL was needed.
_TIMEOUT_CODES = (124, 128 + 9)


def timeout_arg(seconds: float) -> str:
    """``seconds`` as timeout(1) and bash's ``read -t`` (the root shell's timer) accept it.

    No exponent, no trailing zeros. Never "0": to timeout(1) that means no limit at all,
    and ``read -t 0`` returns at once (it only asks whether input is there).
    """
    return f"{max(seconds, 0.001):.3f}".rstrip("0").rstrip(".")


def remote_timed_out(exit_code: int | None, elapsed: float, timeout: float | None) -> bool:
    """Did timeout(1) or the root shell's timer kill the command?

    A command may exit 124 itself, hence elapsed.
    """
    return timeout is not None and exit_code in _TIMEOUT_CODES and elapsed >= timeout


def client_deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout + CLIENT_GRACE


def exec_command_line(timeout: float | None) -> str:
    bash = "/bin/bash -s"
    if timeout is not None:
        bash = f"timeout -k {KILL_AFTER} {timeout_arg(timeout)} {bash}"
    return f"{bash}; exit $?"


def script_on_stdin(script: str) -> bytes:
    # "{ :; " shares the script's first line, so bash's "line N" messages match the script,
    # and keeps the group valid when the script is empty or only comments.
    return ("{ :; " + script + "\n} </dev/null\n").encode("utf-8")


def run_on_exec_channel(
    transport: paramiko.Transport,
    script: str,
    *,
    timeout: float | None,
    collector: ChannelCollector,
    open_timeout: float,
) -> Finished:
    """Run ``script`` with bash on a new channel; the channel is always closed after."""
    chan = transport.open_session(timeout=open_timeout)
    try:
        chan.exec_command(exec_command_line(timeout))
        chan.sendall(script_on_stdin(script))
        chan.shutdown_write()
        return _pump(chan, collector, client_deadline(timeout))
    finally:
        chan.close()


def _pump(chan: paramiko.Channel, collector: ChannelCollector, deadline: float | None) -> Finished:
    while True:
        got = receive(chan, remaining(deadline))
        collector.add("stdout", got.stdout)
        collector.add("stderr", got.stderr)
        if drained(chan):
            break
        if passed(deadline):
            return Finished(exit_code=None, client_timeout=True)
    chan.status_event.wait(remaining(deadline, _STATUS_WAIT))
    return Finished(exit_code=chan.exit_status if chan.exit_status_ready() else None)
