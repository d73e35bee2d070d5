"""Boot a freshly built tree once, offline, so cloud-init provisions it as on a cloud.

Letting the real cloud-init do the provisioning (rather than imitating its output) gives the
image exactly what a deployed VM carries: the default user with cloud-init's own
/etc/sudoers.d/90-cloud-init-users, host keys from cc_ssh, /var/lib/cloud/instances/...,
a committed machine-id, cloud-init logs. Later boots see the same instance-id, so cloud-init
does not provision again (and, in particular, keeps the host keys the known_hosts files name).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.targets.container import ContainerError, NspawnProcess

_BOOT_TIMEOUT_SECONDS = 300.0
_POWEROFF_TIMEOUT_SECONDS = 60.0


def boot_once(root: Path, console_log: Path, env: dict[str, str] | None = None) -> None:
    """Boot `root` without network, check it came up clean, then power it off from inside."""
    container = NspawnProcess(
        root,
        machine=f"imageprep-firstboot-{os.getpid()}",
        console_log=console_log,
        network=["--private-network"],
        env=env,
    )
    container.start()
    try:
        _require_clean_boot(container)
        container.exec_inside(["systemctl", "poweroff"])
        if not container.wait(_POWEROFF_TIMEOUT_SECONDS) or container.returncode != 0:
            raise ContainerError(
                f"first boot did not power off cleanly (nspawn rc={container.returncode}):\n"
                f"{container.console_tail()}"
            )
    finally:
        container.stop()


def _require_clean_boot(container: NspawnProcess) -> None:
    state = _system_state_after_boot(container)
    if state != "running":
        failed = container.exec_inside(["systemctl", "--failed", "--no-legend"]).stdout
        raise ContainerError(f"first boot ended {state!r}; failed units:\n{failed}")
    status = container.exec_inside(["cloud-init", "status", "--long", "--wait"]).stdout
    if "status: done" not in status:
        raise ContainerError(f"cloud-init did not finish its first boot:\n{status}")


def _system_state_after_boot(container: NspawnProcess) -> str:
    # Right after the fork, systemd's private bus socket does not exist yet and
    # is-system-running answers "offline" at once, without waiting.
    deadline = time.monotonic() + _BOOT_TIMEOUT_SECONDS
    while True:
        state = container.exec_inside(
            ["systemctl", "is-system-running", "--wait"], timeout=_BOOT_TIMEOUT_SECONDS
        ).stdout.strip()
        if state not in ("offline", "") or time.monotonic() > deadline:
            return state
        time.sleep(0.1)
