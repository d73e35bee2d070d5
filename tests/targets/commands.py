"""Run host commands for the test-target tooling and fail with what the command printed."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

Arg = str | os.PathLike[str]

_TAIL_LINES = 25


class CommandFailed(RuntimeError):
    """A host command exited non-zero (or timed out); the message ends with its output tail."""

    def __init__(self, argv: Sequence[str], returncode: int | None, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        status = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"{shlex.join(self.argv)} {status}:\n{tail(output, _TAIL_LINES)}")


def strict_ssh_argv(
    *, key: Path, port: int, known_hosts: Path, login: str, remote: Sequence[str]
) -> list[str]:
    """OpenSSH client argv running `remote` as `login` (user@host), host key checked strictly.

    No ssh_config is read, so the tests behave the same on any host.
    """
    return [
        "ssh",
        "-F",
        "none",
        "-i",
        str(key),
        "-p",
        str(port),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "LogLevel=ERROR",
        login,
        *remote,
    ]


def tail(text: str, lines: int) -> str:
    """The last `lines` lines of `text`."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    argv: Sequence[Arg],
    *,
    stdin: str | bytes | None = None,
    timeout: float | None = 300,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run `argv` to completion and return its stdout; raise CommandFailed on a non-zero exit."""
    args = [os.fspath(arg) for arg in argv]
    # Without input, an empty stdin rather than the caller's: a host tool (ssh above all)
    # must not eat input meant for someone else.
    data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
    try:
        proc = subprocess.run(
            args, input=data, capture_output=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(args, None, _decode(exc.stdout) + _decode(exc.stderr)) from exc
    stdout, stderr = _decode(proc.stdout), _decode(proc.stderr)
    if proc.returncode != 0:
        raise CommandFailed(args, proc.returncode, stdout + stderr)
    return stdout


def run_logged(argv: Sequence[Arg], log_path: Path, *, timeout: float | None = 1800) -> None:
    """Run a long, chatty command with its output going to `log_path` (mmdebstrap, tar)."""
    args = [os.fspath(arg) for arg in argv]
    with log_path.open("ab") as log:
        log.write(f"$ {shlex.join(args)}\n".encode())
        log.flush()
        try:
            returncode = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(args, None, log_path.read_text(errors="replace")) from exc
    if returncode != 0:
        raise CommandFailed(args, returncode, log_path.read_text(errors="replace"))


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
