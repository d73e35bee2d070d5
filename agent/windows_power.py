"""After a Windows power-off: make sure the VM stayed off.

A refused TCP connection cannot tell "off" from "rebooting", and a reboot of a
generalized VM runs the specialize pass: the image is spoiled. So after the power-off
step the runner keeps probing the WinRM listener for a while (``power_off_watch_seconds``
of the profile); if it answers again, the VM rebooted and the run fails after the point
of no return (exit 6: restore from the backup), saying so.

Where the platform is known, its API is the better witness (the libvirt domain, the
Azure VM of an azure-snapshot backup): with ``--platform``, :func:`confirm_power_off`
asks it (:class:`PlatformPower`) instead of the listener. Behind a port forwarder the
listener probe answers for the forwarder, so there ``--platform`` is the check that works.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol, runtime_checkable

import structlog

from agent.engine import EngineResult
from agent.outcome import ExitCode

log = structlog.get_logger("agent.windows_power")

DEFAULT_WATCH_SECONDS = 120.0
SILENCE_TIMEOUT = 120.0  # how long Windows may take to close the listener
_PROBE_INTERVAL = 0.5


@runtime_checkable
class ListenerProbe(Protocol):
    def listener_answers(self) -> bool: ...


class PlatformPower(Protocol):
    """What a platform (issue 15's --platform) will answer: is the VM powered off?"""

    description: str

    def is_powered_off(self) -> bool: ...


def confirm_power_off(
    result: EngineResult,
    probe: ListenerProbe,
    *,
    watch_seconds: float = DEFAULT_WATCH_SECONDS,
    platform: PlatformPower | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> EngineResult:
    """``result`` unchanged when the VM stayed off; else a failure that says it rebooted."""
    if not result.powered_off:
        return result
    if platform is not None:
        if platform.is_powered_off():
            log.info("power_off.confirmed", by=platform.description)
            return result
        return _rebooted(result, f"{platform.description} reports the VM running after power-off")
    if watch_seconds <= 0:
        return result
    # The power-off step may have lost its connection before Windows closed the
    # listener (shutdown takes a few seconds): first see it go silent...
    started = time.monotonic()
    while probe.listener_answers():
        if time.monotonic() - started >= SILENCE_TIMEOUT:
            return _rebooted(
                result,
                f"the WinRM listener still answered {SILENCE_TIMEOUT:.0f} s after power-off",
                rebooted=False,
            )
        sleep(_PROBE_INTERVAL)
    # ...then make sure it stays silent: a listener that answers again is a reboot.
    silent = time.monotonic()
    while time.monotonic() - silent < watch_seconds:
        if probe.listener_answers():
            after = time.monotonic() - silent
            return _rebooted(
                result,
                f"the WinRM listener went silent after power-off and answered again "
                f"{after:.0f} s later",
            )
        sleep(_PROBE_INTERVAL)
    log.info("power_off.confirmed", by="listener silent", watched_s=watch_seconds)
    return result


def _rebooted(result: EngineResult, why: str, *, rebooted: bool = True) -> EngineResult:
    if rebooted:
        message = (
            f"{why}: the VM rebooted instead of powering off, so Windows ran its specialize "
            "pass and the image is no longer generalized; restore the VM from the backup "
            "(and check the hypervisor's action on guest shutdown)"
        )
    else:
        message = (
            f"{why}: the VM did not power off (or a port forwarder answers for it); check "
            "it on its platform, and restore it from the backup if it booted again"
        )
    log.error("power_off.rebooted", message=message)
    return replace(
        result,
        exit_code=ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN,
        message=message,
        powered_off=False,
    )
