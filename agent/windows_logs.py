"""After a failed Windows run: Sysprep's Panther logs into the run folder, and a diagnosis.

Sysprep's own message is always the same generic one; what broke is in
``%WINDIR%\\System32\\Sysprep\\Panther\\setuperr.log`` (errors only) and ``setupact.log``
(windows.md §1.4, §2). While the connection is still up, the runner calls
:func:`collect_on_failure`: it copies the tails of both logs into ``<run>/panther/``,
and, when the failure came after Sysprep started, adds the first error lines of
setuperr.log to the failure message with a one-line cause and fix for the failures
Sysprep is known for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from agent.engine import EngineResult
from agent.errors import ImagePrepError
from agent.executors.base import Executor

log = structlog.get_logger("agent.windows_logs")

# Below $env:SystemRoot, which is not always C:\Windows.
PANTHER = r"System32\Sysprep\Panther"
LOG_NAMES = ("setupact.log", "setuperr.log")
# Windows Setup's own logs, of the installation and of earlier Sysprep runs' specialize
# and OOBE passes, below $env:SystemRoot.
SETUP_PANTHER = "Panther"
OLD_PANTHER_DIR = "panther-before-sysprep"
OLD_PANTHER_MAX_FILES = 200
OLD_PANTHER_MAX_BYTES = 64 * 1024 * 1024
TAIL_LINES = 200
FIRST_ERRORS = 3
_ERROR_LINE = re.compile(r"\bError\b")
# What only a failed Sysprep writes: a failed action, or a provider's fatal error.
_FATAL_LINE = re.compile(r"Failure occurred while executing|\bFatal\b")
_QUOTED_PREFIX = 60


@dataclass(frozen=True)
class KnownFailure:
    """A Sysprep failure recognised by a log line, with its cause and fix."""

    pattern: re.Pattern[str]
    cause: str
    fix: str

    def describe(self) -> str:
        return f"{self.cause}; fix: {self.fix}"


# The failures of windows.md §2, by the lines Sysprep writes for them.
KNOWN_FAILURES = (
    KnownFailure(
        re.compile(r"0x80073cf2|installed for a user, but not provisioned", re.IGNORECASE),
        "an AppX package is installed for a user but not provisioned for all users",
        "Remove-AppxPackage -Package <full name> -AllUsers (or provision it), then start "
        "again from the backup",
    ),
    KnownFailure(
        re.compile(r"0x80310039|BitLocker is on", re.IGNORECASE),
        "BitLocker is on for the OS volume",
        "Disable-BitLocker -MountPoint C: and wait for FullyDecrypted, then start again "
        "from the backup",
    ),
    KnownFailure(
        re.compile(r"require a reboot|reboot the computer|reserved storage is in use", re.I),
        "a reboot is pending (Windows servicing is unfinished)",
        "reboot, wait until ImageState is IMAGE_STATE_COMPLETE, then start again from the backup",
    ),
    KnownFailure(
        re.compile(r"SLReArmWindows|0xc004d307", re.IGNORECASE),
        "no Windows rearm is left",
        "set SkipRearm=1 (answer file or registry), or build from a fresh base image",
    ),
)


def _tail_script(relative: str) -> str:
    # One round trip per log; a missing log is not an error worth reporting.
    return (
        f"$log = Join-Path $env:SystemRoot '{relative}'\n"
        f"if (Test-Path -LiteralPath $log) {{ Get-Content -LiteralPath $log -Tail {TAIL_LINES} }}"
    )


# Full path and size of each file below $env:SystemRoot\Panther, tab-separated.
_LIST_OLD_PANTHER = (
    "$panther = Join-Path $env:SystemRoot 'Panther'\n"
    "if (Test-Path -LiteralPath $panther) {\n"
    "  foreach ($file in @(Get-ChildItem -LiteralPath $panther -Recurse -File -Force)) {\n"
    '    Write-Output ($file.FullName + "`t" + $file.Length)\n'
    "  }\n"
    "}\n"
)


def log_scripts() -> list[tuple[str, str]]:
    """(log name, script) for every log this module reads (parsed by the unit tests)."""
    tails = [(name, _tail_script(f"{PANTHER}\\{name}")) for name in LOG_NAMES]
    return [*tails, ("list old Panther", _LIST_OLD_PANTHER)]


def fetch_logs(executor: Executor, run_dir: Path) -> dict[str, str]:
    """The tails of setupact.log and setuperr.log, also written to ``run_dir/panther``."""
    folder = run_dir / "panther"
    logs: dict[str, str] = {}
    for name in LOG_NAMES:
        try:
            result = executor.run(_tail_script(f"{PANTHER}\\{name}"), timeout=60)
        except ImagePrepError as exc:
            log.warning("windows_logs.fetch_failed", log=name, error=str(exc))
            continue
        if not result.ok:
            log.warning("windows_logs.fetch_failed", log=name, exit_code=result.exit_code)
            continue
        folder.mkdir(exist_ok=True)
        (folder / name).write_text(result.stdout, encoding="utf-8")
        logs[name] = result.stdout
    return logs


def save_old_panther(executor: Executor, run_dir: Path) -> int:
    """Copy ``$env:SystemRoot\\Panther`` into ``run_dir/panther-before-sysprep``.

    Azure's "Generalize a VM" document has that folder deleted before Sysprep (the
    cleanup step remove-old-panther does); its logs tell how this VM was installed, so
    they are kept first. Bounded (files, bytes); a failure is logged, not fatal: the
    logs are diagnostics. Returns the number of files saved.
    """
    folder = run_dir / OLD_PANTHER_DIR
    if folder.exists():
        return 0  # saved by an earlier session of this run, before the folder was removed
    folder.mkdir()
    try:
        listing = executor.run(_LIST_OLD_PANTHER, timeout=120)
    except ImagePrepError as exc:
        log.warning("windows_logs.old_panther_failed", error=str(exc))
        return 0
    if not listing.ok:
        log.warning("windows_logs.old_panther_failed", exit_code=listing.exit_code)
        return 0
    saved, total = 0, 0
    for line in listing.stdout.splitlines():
        path, _, size = line.rpartition("\t")
        marker = "\\panther\\"
        start = path.casefold().find(marker)
        if start < 0 or not size.strip().isdigit():
            continue
        total += int(size)
        if saved >= OLD_PANTHER_MAX_FILES or total > OLD_PANTHER_MAX_BYTES:
            log.warning("windows_logs.old_panther_truncated", saved=saved, bytes=total)
            break
        relative = path[start + len(marker) :].replace("\\", "/")
        local = folder / relative
        if ".." in Path(relative).parts:
            continue
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            executor.get(path, local)
        except (ImagePrepError, OSError) as exc:
            log.warning("windows_logs.old_panther_failed", file=path, error=str(exc))
            continue
        saved += 1
    log.info("windows_logs.old_panther_saved", files=saved, folder=str(folder))
    return saved


def first_errors(setuperr: str, limit: int = FIRST_ERRORS) -> list[str]:
    """The first error lines of setuperr.log, without their timestamp; lines that mean
    Sysprep failed come first (a successful Sysprep writes harmless error lines too)."""
    lines = [line.strip() for line in setuperr.splitlines() if _ERROR_LINE.search(line)]
    lines.sort(key=lambda line: _FATAL_LINE.search(line) is None)
    return [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\s*", "", line) for line in lines[:limit]]


def diagnose(lines: list[str]) -> KnownFailure | None:
    """The known failure the log lines show, if any (the first that matches)."""
    for line in lines:
        for known in KNOWN_FAILURES:
            if known.pattern.search(line):
                return known
    return None


def collect_on_failure(executor: Executor, run_dir: Path, result: EngineResult) -> EngineResult:
    """Fetch the Panther logs; past the point of no return, explain the failure with them."""
    if not executor.is_connected():
        return result
    logs = fetch_logs(executor, run_dir)
    if not result.point_of_no_return_reached:
        return result  # logs of an earlier Sysprep run would mislead here
    errors = first_errors(logs.get("setuperr.log", ""))
    if not errors:
        return result
    known = diagnose(errors)
    log.error("sysprep.errors", lines=errors, cause=known.cause if known else None)
    # The step's own last line often quotes the first error already (maybe truncated).
    unseen = [line for line in errors if line[:_QUOTED_PREFIX] not in result.message]
    message = result.message
    if unseen:
        message += f"; setuperr.log: {' | '.join(unseen)}"
    if known is not None:
        message += f"; cause: {known.describe()}"
    return replace(result, message=message)
