"""What a run does differently on a Windows target, in one place.

The runner imports this module only for a Windows target: a Linux run (the common case)
does not load the Windows facts, Panther logs, power watch and OOBE modules at start-up
(about 4 ms of it; tests/unit/test_offline_imports.py holds that).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agent.facts_windows import WindowsFacts, describe, gather_windows_facts
from agent.outcome import ExitCode
from agent.windows_logs import collect_on_failure, save_old_panther
from agent.windows_oobe import with_oobe_password
from agent.windows_power import DEFAULT_WATCH_SECONDS, ListenerProbe, confirm_power_off

if TYPE_CHECKING:
    from agent.engine import EngineResult
    from agent.executors.base import Executor
    from agent.executors.winrm import WinRmOptions
    from agent.plan import Plan

__all__ = [
    "WindowsFacts",
    "after_run",
    "before_run",
    "describe",
    "lock_and_gather",
    "winrm_options",
]


def winrm_options(
    options: WinRmOptions | None, var_overrides: Mapping[str, str]
) -> WinRmOptions | None:
    """The connection's options, with the OOBE password (windows_oobe) in its environment."""
    return with_oobe_password(options, var_overrides)


def lock_and_gather(executor: Executor, hold_vm_lock: Callable[[], None]) -> WindowsFacts:
    """The VM's lock, then the facts over WinRM."""
    hold_vm_lock()
    return gather_windows_facts(executor)


def before_run(executor: Executor, run_dir: Path, plan: Plan) -> None:
    """Keep the Panther logs of an earlier Sysprep: the cleanup deletes the folder."""
    if plan.has_destructive_steps:
        save_old_panther(executor, run_dir)


def after_run(
    executor: Executor, run_dir: Path, plan: Plan, result: EngineResult, *, watch_listener: bool
) -> EngineResult:
    """Panther logs of a failure; a power-off that turned out to be a reboot (exit 6).

    ``watch_listener``: without --platform the listener is watched for a reboot; with it,
    the platform says whether the VM is off.
    """
    if result.exit_code is not ExitCode.OK:
        result = collect_on_failure(executor, run_dir, result)
    if watch_listener and isinstance(executor, ListenerProbe):
        watch = float(plan.vars.get("power_off_watch_seconds", DEFAULT_WATCH_SECONDS))
        result = confirm_power_off(result, executor, watch_seconds=watch)
    return result
