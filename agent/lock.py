"""One run per target at a time, on this controller: an flock held for the whole run.

The lock file is ``$XDG_STATE_HOME/imageprep/locks/<sha256 of host:port>.lock`` (state
directory ``~/.local/state`` when ``XDG_STATE_HOME`` is unset). It is keyed by the
machine, ``host:port``, not by the login user: two runs logging in to the same VM as
different users would still fight over it. The kernel drops an flock when its holder
exits, however it exits (SIGKILL too), so a stale lock never blocks a later run or a
``--resume``; the file's content only says who holds it, for the refusal message.

It does not see runs started on another controller: the lock on the VM itself
(``agent.vmlock``, taken once connected) does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from agent.errors import RunDirError, TargetBusy
from agent.targets import Target


def state_dir() -> Path:
    """imageprep's per-user state directory (XDG Base Directory specification)."""
    base = os.environ.get("XDG_STATE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "imageprep"


def lock_key(target: Target) -> str:
    """What identifies the machine: host (case-insensitive) and port."""
    return f"{target.host.lower()}:{target.port}"


def lock_path(target: Target, directory: Path | None = None) -> Path:
    digest = hashlib.sha256(lock_key(target).encode()).hexdigest()[:32]
    return (directory or state_dir() / "locks") / f"{digest}.lock"


@dataclass
class TargetLock:
    """An exclusive flock on the target's lock file, released by ``release`` or at exit."""

    path: Path
    _fd: int | None

    @classmethod
    def acquire(
        cls, target: Target, *, run_id: str, run_dir: Path, directory: Path | None = None
    ) -> TargetLock:
        """Take the target's lock or raise TargetBusy naming the run that holds it."""
        path = lock_path(target, directory)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RunDirError(f"lock file {path}: cannot open: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise TargetBusy(
                f"target {target.display} is busy: {_describe(holder)} holds its lock {path}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        holder_line = json.dumps(
            {
                "run_id": run_id,
                "pid": os.getpid(),
                "target": target.display,
                "run_dir": str(run_dir),
            }
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder_line + "\n").encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder.get("run_id"):
        # Between the holder's flock and its first write: it is starting right now.
        return "another imageprep run (just starting)"
    where = f", run folder {holder['run_dir']}" if holder.get("run_dir") else ""
    return f"run {holder['run_id']} (pid {holder.get('pid', '?')}{where})"
