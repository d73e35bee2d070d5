"""The harness of the hostile-input corpus (tests/unit/test_hostile_inputs.py).

A case builds its input in a fresh folder (files, environment, peers on 127.0.0.1), runs
the CLI once and is judged on what the issue asks of every bad input:

* the documented exit code;
* exactly the expected number of lines on stderr (one, or for ``validate`` the problem
  and its count), the first naming the file:line, field, option, host or step;
* no traceback anywhere, and no exception escaping the CLI;
* a bounded time, enforced by the harness (SIGALRM in process, a time-out for a
  subprocess): a hang fails the case, a slow machine does not;
* what was written (nothing; an unchanged run folder; a final result.json);
* the case's secrets nowhere (stdout, stderr, every file written) in any of the forms a
  leak takes: raw, JSON-escaped, URL-encoded, base64 of UTF-8 and of UTF-16LE.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import quote, quote_plus

from click.testing import CliRunner

from agent.cli import main
from agent.logging import reset_logging
from agent.secrets import REGISTRY

#: A case that takes longer than this hangs (the slowest legitimate one waits ~2 s).
BOUND_SECONDS = 30.0


class HarnessTimeout(BaseException):
    """The case ran past its bound (BaseException: nothing in the CLI may swallow it)."""


@dataclass
class Ctx:
    """What a case builds its input in."""

    root: Path  # the case's folder; every file the CLI writes must be below it
    secret: str
    env: dict[str, str] = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def password_env(self) -> list[str]:
        """--password-env naming a variable that holds this case's secret."""
        self.env["HOSTILE_PW"] = self.secret
        return ["--password-env", "HOSTILE_PW"]


Written = Callable[[Ctx, dict[Path, bytes]], None]


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Ctx], list[str]]  # -> argv
    exit_code: int
    names: str  # regex the first stderr line must match
    lines: int = 1
    written: Written | None = None
    subprocess: bool = False  # run the real entry point (for what only a process shows)


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None
    seconds: float


def secret_forms(secret: str) -> list[str]:
    """How a secret looks once leaked through a log, a URL, JSON or -EncodedCommand."""
    return sorted(
        {
            secret,
            json.dumps(secret)[1:-1],
            quote(secret, safe=""),
            quote_plus(secret),
            base64.b64encode(secret.encode("utf-8")).decode(),
            base64.b64encode(secret.encode("utf-16-le")).decode(),
        }
    )


def snapshot(root: Path) -> dict[Path, bytes]:
    """Every regular file below ``root`` with its content."""
    files: dict[Path, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                files[path] = path.read_bytes()
    return files


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise HarnessTimeout(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_in_process(argv: list[str], ctx: Ctx) -> Outcome:
    started = time.monotonic()
    old_cwd = Path.cwd()
    os.chdir(ctx.root)  # default run folders land in the case's folder
    try:
        with bounded(BOUND_SECONDS):
            result = CliRunner().invoke(main, argv, env=ctx.env, catch_exceptions=True)
    finally:
        os.chdir(old_cwd)
        reset_logging()
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return Outcome(
        result.exit_code, result.stdout, result.stderr, exception, time.monotonic() - started
    )


def run_subprocess(argv: list[str], ctx: Ctx) -> Outcome:
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTILE_")}
    proc = subprocess.run(
        [sys.executable, "-c", "from agent.cli import main; main()", *argv],
        cwd=ctx.root,
        env={**env, **ctx.env},
        capture_output=True,
        text=True,
        timeout=BOUND_SECONDS,
        check=False,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, None, time.monotonic() - started)


def run_case(case: Case, tmp_path: Path) -> None:
    """Build, run and judge one case (see the module docstring)."""
    root = tmp_path / "case"
    root.mkdir()
    secret = f"Hx-{case.id[:12]}-pä$$ w/rd+=\"'"
    ctx = Ctx(root=root, secret=secret)
    REGISTRY.clear()
    with ctx.stack:
        argv = case.build(ctx)
        before = snapshot(tmp_path)
        outcome = (run_subprocess if case.subprocess else run_in_process)(argv, ctx)
    judge(case, ctx, outcome, before, tmp_path)


def judge(case: Case, ctx: Ctx, out: Outcome, before: dict[Path, bytes], tmp_path: Path) -> None:
    shown = (
        f"exit {out.exit_code}\n--- stdout\n{_clip(out.stdout)}\n--- stderr\n{_clip(out.stderr)}"
    )
    assert out.exception is None, f"{out.exception!r} escaped the CLI\n{shown}"
    assert "Traceback" not in out.stdout + out.stderr, shown
    assert out.exit_code == case.exit_code, shown
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == case.lines, shown
    assert re.search(case.names, lines[0]), f"{case.names!r} not in {_clip(lines[0])!r}"
    after = snapshot(tmp_path)
    written = {p: data for p, data in after.items() if before.get(p) != data}
    for form in secret_forms(ctx.secret):
        assert form not in out.stdout, f"secret ({form!r}) on stdout\n{shown}"
        assert form not in out.stderr, f"secret ({form!r}) on stderr\n{shown}"
        for path, data in written.items():
            assert form.encode() not in data, f"secret ({form!r}) in {path}"
    if case.written is not None:
        case.written(ctx, before)


def _clip(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# -- what was written ----------------------------------------------------------------------


def nothing_written(ctx: Ctx, before: dict[Path, bytes]) -> None:
    """The case's folder holds exactly what the case put there."""
    assert snapshot(ctx.root) == {p: d for p, d in before.items() if ctx.root in p.parents}


def final_result(exit_code: int) -> Written:
    """result.json in the run folder is final (never "running") with this exit code."""

    def check(ctx: Ctx, before: dict[Path, bytes]) -> None:
        data = json.loads((ctx.run_dir / "result.json").read_text(encoding="utf-8"))
        assert data["status"] in ("failed", "interrupted", "succeeded"), data["status"]
        assert data["exit_code"] == exit_code
        assert data["finished_at"]

    return check


def run_folder_unchanged(ctx: Ctx, before: dict[Path, bytes]) -> None:
    """A refused --resume leaves the run folder byte for byte as it was."""
    now = snapshot(ctx.run_dir)
    assert now == {p: d for p, d in before.items() if ctx.run_dir in p.parents}
