"""``libvirt:DOMAIN[?uri=URI&power-off-timeout=SECONDS]`` — a libvirt domain's power state.

The domain is looked up on each reading (libvirt-python, from the ``libvirt`` extra,
imported only when this scheme is used); its state is reported in virsh's words
(``virsh domstate``: ``running``, ``in shutdown``, ``shut off``, ...). Capturing is an
Azure feature: a libvirt domain's disk becomes an image with ``imageprep vhd``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import libvirt

from agent.errors import PlatformError, UsageError
from agent.platforms.base import CaptureRecord, PowerState

if TYPE_CHECKING:
    from agent.capture import CaptureTarget

SCHEME = "libvirt"
# virsh domstate's words for each state (libvirt's tools/virsh-domain-monitor.c).
_WORDS = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "idle",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "in shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}
_RUNNING = {libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED}


def _ignore_libvirt_errors(_context: Any, _error: Any) -> None:
    """libvirt prints every error to stderr by default; we raise them with context instead."""


libvirt.registerErrorHandler(_ignore_libvirt_errors, None)


@dataclass(frozen=True)
class LibvirtPlatformSpec:
    domain: str
    uri: str | None = None
    power_off_timeout: float = 600.0


def parse_arg(arg: str) -> LibvirtPlatformSpec:
    domain, _, query = arg.strip().partition("?")
    if not domain:
        raise UsageError(f"--platform {SCHEME}:{arg}: expected DOMAIN[?uri=URI]")
    uri: str | None = None
    timeout = 600.0
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key == "uri" and value:
            uri = value
        elif key == "power-off-timeout":
            timeout = _seconds(value)
        else:
            raise UsageError(
                f"--platform {SCHEME}: unknown or empty option {key}={value!r} "
                "(known: uri=URI, power-off-timeout=SECONDS)"
            )
    return LibvirtPlatformSpec(domain, uri, timeout)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise UsageError(
            f"--platform: power-off-timeout={value!r} is not a number of seconds in (0, 86400]"
        )
    return seconds


class LibvirtPlatform:
    scheme = SCHEME

    def __init__(self, spec: LibvirtPlatformSpec, *, power_poll_interval: float = 1.0) -> None:
        self.spec = spec
        self.power_off_timeout = spec.power_off_timeout
        self.power_poll_interval = power_poll_interval

    @property
    def vm_id(self) -> str:
        return f"{self.spec.uri or 'default'}#{self.spec.domain}"

    def describe(self) -> str:
        where = self.spec.uri or "libvirt's default URI"
        return f"{SCHEME}: domain {self.spec.domain} on {where}"

    def power_state(self) -> PowerState:
        where = self.spec.uri or "libvirt's default URI"
        try:
            conn = libvirt.open(self.spec.uri)
        except libvirt.libvirtError as exc:
            raise PlatformError(f"{SCHEME}: cannot connect to {where}: {_message(exc)}") from exc
        try:
            state = conn.lookupByName(self.spec.domain).state()[0]
        except libvirt.libvirtError as exc:
            raise PlatformError(
                f"{SCHEME}: cannot read the state of domain {self.spec.domain} on {where}: "
                f"{_message(exc)}"
            ) from exc
        finally:
            conn.close()
        return PowerState(
            words=_WORDS.get(state, f"state {state}"),
            off=state == libvirt.VIR_DOMAIN_SHUTOFF,
            running=state in _RUNNING,
        )

    def check_capture(self, target: CaptureTarget, *, run_id: str | None) -> None:
        raise UsageError(
            f"--capture {target.spec}: capturing is for Azure VMs (--platform azure:VM_ID); "
            "for a libvirt domain, turn its disk into an image with `imageprep vhd`"
        )

    def capture(
        self,
        target: CaptureTarget,
        *,
        run_id: str | None,
        tags: Mapping[str, str],
        on_step: Callable[[str, Mapping[str, str]], None],
    ) -> CaptureRecord:
        self.check_capture(target, run_id=run_id)
        raise AssertionError("unreachable")  # pragma: no cover


def _message(exc: Any) -> str:
    return str(exc.get_error_message() or exc).strip()


def from_arg(arg: str) -> LibvirtPlatform:
    return LibvirtPlatform(parse_arg(arg))
