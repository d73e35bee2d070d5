"""``command:CMD`` — run the user's own snapshot command locally (a cloud or hypervisor CLI).

The command runs on the controller through ``/bin/sh -c``, never on the target, with the
target's details in ``IMAGEPREP_*`` environment variables. Exit 0 means the snapshot
exists; what it prints on stdout is its reference (snapshot id). It must print one:
a backup nobody can name cannot be restored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping

from agent.backups.base import BackupContext, BackupRecord, stderr_summary, utc_timestamp
from agent.errors import BackupError, UsageError
from agent.executors.base import Executor
from agent.redaction import Redactor

STDOUT_DETAIL_LIMIT = 4096
STDERR_FILE = "backup-command.stderr.txt"  # in the run folder, when the command fails
_KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL, to let a CLI clean up


def command_environment(context: BackupContext) -> dict[str, str]:
    """The variables the command sees on top of ours; none of them is secret."""
    target = context.target
    return {
        "IMAGEPREP_RUN_ID": context.run_id,
        "IMAGEPREP_TARGET_URL": target.display,
        "IMAGEPREP_TARGET_SCHEME": target.scheme,
        "IMAGEPREP_TARGET_HOST": target.host,
        "IMAGEPREP_TARGET_PORT": str(target.port),
        "IMAGEPREP_TARGET_USER": target.user,
        "IMAGEPREP_RUN_DIR": str(context.run_dir),
        "IMAGEPREP_BACKUP_PATHS": "\n".join(context.paths),
    }


def _tail_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    kept = data[-limit:].decode("utf-8", "ignore")
    return f"[{len(data) - limit} bytes truncated]\n{kept}"


def parse_reference(stdout: str) -> tuple[str, dict[str, str]]:
    """The snapshot reference in a command's stdout, and details worth keeping.

    One non-empty line is the reference. Longer output: a JSON object's ``id`` (what
    ``az snapshot create`` prints), else the last non-empty line; the output itself goes
    into the details, truncated to its last 4 KiB.
    """
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise BackupError(
            "backup command succeeded but printed nothing on stdout; "
            "it must print the snapshot's reference (e.g. az ... --query id -o tsv)"
        )
    if len(lines) == 1:
        return lines[0], {}
    details = {"stdout": _tail_bytes(stdout.strip(), STDOUT_DETAIL_LIMIT)}
    try:
        parsed = json.loads(stdout)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("id"), str) and parsed["id"]:
        return parsed["id"], details
    return lines[-1], details


class CommandProvider:
    scheme = "command"

    def __init__(self, command: str, *, timeout: float = 3600.0) -> None:
        if not command.strip():
            raise UsageError("--backup command: no command given")
        self.command = command
        self.timeout = timeout

    def describe(self) -> str:
        return f"command: {self.command}"

    def take(self, executor: Executor, context: BackupContext) -> BackupRecord:
        """Run the command; ``executor`` is unused: the snapshot is taken from outside."""
        redactor = Redactor()
        created_at = utc_timestamp()
        started = time.monotonic()
        code, stdout, stderr = self._run({**os.environ, **command_environment(context)})
        duration = time.monotonic() - started
        stdout, stderr = redactor.redact_text(stdout), redactor.redact_text(stderr)
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
            summary = stderr_summary(stderr, context.run_dir, STDERR_FILE)
            raise BackupError(f"backup command {how}: {summary}")
        reference, details = parse_reference(stdout)
        if stderr.strip():
            details["stderr"] = _tail_bytes(stderr.strip(), STDOUT_DETAIL_LIMIT)
        details["command"] = redactor.redact_text(self.command)
        return BackupRecord(
            provider=self.scheme,
            reference=reference,
            created_at=created_at,
            duration=duration,
            details=details,
            restore_hint=f"restore with the tool that took snapshot {reference}",
        )

    def _run(self, env: Mapping[str, str]) -> tuple[int, str, str]:
        try:
            # A session of its own: on timeout the whole group (sh and the CLI it
            # started) is signalled, not just the shell.
            with subprocess.Popen(
                ["/bin/sh", "-c", self.command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
                start_new_session=True,
            ) as proc:
                try:
                    out, err = proc.communicate(timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    _stop_group(proc)
                    raise BackupError(
                        f"backup command did not finish within {self.timeout:g} s and was stopped"
                    ) from None
        except OSError as exc:
            raise BackupError(f"backup command could not be started: {exc}") from exc
        return proc.returncode, _decode(out), _decode(err)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.communicate(timeout=_KILL_GRACE)
            return
        except subprocess.TimeoutExpired:
            continue


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def from_arg(arg: str) -> CommandProvider:
    return CommandProvider(arg)
