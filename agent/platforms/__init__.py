"""Platforms: where the VM runs (Azure, libvirt), asked for its power state and to capture it.

One module per scheme, found through :func:`platform_from_spec` and imported only when its
scheme is used, so an SDK costs nothing to users who do not use it.
"""

from agent.platforms.base import (
    CaptureRecord,
    Platform,
    PowerCheck,
    PowerState,
    confirm_powered_off,
    default_platform_spec,
    platform_from_spec,
)

__all__ = [
    "CaptureRecord",
    "Platform",
    "PowerCheck",
    "PowerState",
    "confirm_powered_off",
    "default_platform_spec",
    "platform_from_spec",
]
