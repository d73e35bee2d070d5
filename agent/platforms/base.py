"""What a platform is, how ``--platform SCHEME:ARG`` finds one, and the power-off check.

A platform is asked, after the shutdown phase, whether the VM is really off: the
platform's own words (Azure's ``PowerState/stopped``, libvirt's ``shut off``) go into the
report, so "off" is a fact and not an inference from a dropped connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agent.errors import PlatformError, PoweredOnAgain, UsageError
from agent.extras import import_for_scheme

if TYPE_CHECKING:
    from agent.capture import CaptureTarget


@dataclass(frozen=True)
class PowerState:
    """One reading of the VM's power state, in the platform's words."""

    words: str  # "PowerState/stopped", "shut off", ...
    off: bool  # the VM is not running and will not run by itself
    running: bool  # the guest runs (or is starting)


@dataclass(frozen=True)
class PowerCheck:
    """How the power-off was confirmed: the last reading, how many, how long it took."""

    state: PowerState
    readings: tuple[str, ...]  # each distinct state seen, in order
    polls: int
    waited: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "power_state": self.state.words,
            "readings": list(self.readings),
            "polls": self.polls,
            "waited": round(self.waited, 3),
        }


@dataclass(frozen=True, kw_only=True)
class CaptureRecord:
    """What a capture made: the image's id and kind, and what was done to the VM."""

    kind: str  # "gallery-image-version" or "managed-image"
    image_id: str
    vm_id: str
    provisioning_state: str
    adopted: bool  # found already made by this run (a resume), not created again
    steps: tuple[str, ...]  # "deallocated", "generalized", "created", ...
    details: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "image_id": self.image_id,
            "vm_id": self.vm_id,
            "provisioning_state": self.provisioning_state,
            "adopted": self.adopted,
            "steps": list(self.steps),
            "details": dict(self.details),
        }


@runtime_checkable
class Platform(Protocol):
    """The VM as its platform sees it. Constructing one contacts nothing."""

    scheme: str
    power_off_timeout: float
    power_poll_interval: float

    @property
    def vm_id(self) -> str:
        """The platform's name for the VM (an ARM id, ``URI#DOMAIN``)."""
        ...

    def describe(self) -> str: ...

    def power_state(self) -> PowerState: ...

    def check_capture(self, target: CaptureTarget, *, run_id: str | None) -> None:
        """Everything that can be checked before anything changes; raises when it fails."""
        ...

    def capture(
        self,
        target: CaptureTarget,
        *,
        run_id: str | None,
        tags: Mapping[str, str],
        on_step: Callable[[str, Mapping[str, str]], None],
    ) -> CaptureRecord: ...


@dataclass(frozen=True)
class PlatformEntry:
    module: str
    summary: str
    extra: str | None = None


PLATFORMS: Mapping[str, PlatformEntry] = MappingProxyType(
    {
        "azure": PlatformEntry(
            "agent.platforms.azure",
            "the VM's resource id, /subscriptions/SUB/resourceGroups/RG/providers/"
            "Microsoft.Compute/virtualMachines/VM",
            "azure",
        ),
        "libvirt": PlatformEntry("agent.platforms.libvirt", "DOMAIN[?uri=URI]", "libvirt"),
    }
)

# --backup schemes that already name the VM, and the platform scheme they imply.
_BACKUP_PLATFORMS = {"azure-snapshot": "azure", "libvirt": "libvirt"}


def default_platform_spec(backup_spec: str | None) -> str | None:
    """The ``--platform`` a ``--backup`` implies: ``azure-snapshot:VM`` and ``libvirt:DOM``.

    Only the VM part is kept (backup-only options such as ``data-disks`` or ``snapshot``
    are dropped; ``uri`` stays).
    """
    if not backup_spec:
        return None
    scheme, _, arg = backup_spec.partition(":")
    platform = _BACKUP_PLATFORMS.get(scheme)
    if platform is None or not arg.strip():
        return None
    path, _, query = arg.partition("?")
    if platform == "libvirt":
        from urllib.parse import parse_qsl, urlencode

        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k == "uri"]
        return f"libvirt:{path}" + (f"?{urlencode(kept)}" if kept else "")
    return f"{platform}:{path}"


def platform_from_spec(spec: str) -> Platform:
    """``SCHEME:ARG`` -> a platform, checked locally; UsageError naming what is wrong."""
    scheme, sep, arg = spec.partition(":")
    entry = PLATFORMS.get(scheme)
    if not sep or entry is None:
        known = ", ".join(f"{k}:" for k in PLATFORMS)
        raise UsageError(f"--platform {spec!r}: unknown platform {scheme!r} (known: {known})")
    if not arg.strip():
        raise UsageError(f"--platform {spec!r}: nothing after '{scheme}:' ({entry.summary})")
    module = import_for_scheme("--platform", scheme, entry.module, entry.extra)
    platform: Platform = module.from_arg(arg)
    return platform


def confirm_powered_off(
    platform: Platform,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PowerCheck:
    """Ask until the platform says the VM is off, within ``platform.power_off_timeout``.

    A platform keeps reporting "running" for a while after the guest began its shutdown,
    so "running" alone is not yet a verdict; "running" *after* a state that was not
    running is (the VM came back up), and so is "running" still at the deadline.
    Raises PoweredOnAgain for those, PlatformError for any other state at the deadline.
    """
    started = clock()
    deadline = started + platform.power_off_timeout
    readings: list[str] = []
    left_running = False
    polls = 0
    while True:
        state = platform.power_state()
        polls += 1
        if not readings or readings[-1] != state.words:
            readings.append(state.words)
        if state.off:
            return PowerCheck(state, tuple(readings), polls, clock() - started)
        seen = " -> ".join(readings)
        if state.running and left_running:
            raise PoweredOnAgain(_running_again(platform, state, seen, "came back up"))
        left_running = left_running or not state.running
        if clock() >= deadline:
            if state.running:
                raise PoweredOnAgain(
                    _running_again(
                        platform,
                        state,
                        seen,
                        f"still runs {platform.power_off_timeout:g} s after the shutdown",
                    )
                )
            raise PlatformError(
                f"{platform.scheme}: VM {platform.vm_id} did not power off within "
                f"{platform.power_off_timeout:g} s (states seen: {seen})"
            )
        sleep(min(platform.power_poll_interval, max(0.0, deadline - clock())))


def _running_again(platform: Platform, state: PowerState, seen: str, what: str) -> str:
    return (
        f"{platform.scheme}: VM {platform.vm_id} {what} ({state.words}; states seen: {seen}): "
        "if it booted after generalization, its specialize pass may have run and it is no "
        "longer an image source; restore it from the backup and run again"
    )
