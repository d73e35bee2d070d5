"""Fixtures for VM tests (QEMU, tests/targets/qemu.py); loaded as a plugin (pyproject addopts).

vm_image_factory   session: suite -> cached VmImage with its saved booted state (built once)
vm_target_factory  call it (suite=..., restore=...) for fresh VMs, torn down after the test
vm_target          a fresh VM of $IMAGEPREP_TEST_SUITE (default bookworm), restored (~2 s)

Without root or QEMU these tests skip; with IMAGEPREP_REQUIRE_TARGETS=1 (CI) they fail, like
the container fixtures in conftest.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import NoReturn, Protocol

import pytest

from tests.targets.qemu import QemuTarget, save_booted_state
from tests.targets.qemu_image import VmImage, ensure_vm_image
from tests.targets.rootfs import DEFAULT_SUITE, MissingHostTool

_HOST_TOOLS = (
    "qemu-system-x86_64",
    "qemu-img",
    "debugfs",
    "mkfs.ext4",
    "ssh",
    "mkfs.vfat",
    "mcopy",
)
_CONSOLE_LINES = 60

VmImageFactory = Callable[[str], VmImage]


class VmTargetFactory(Protocol):
    """Starts a fresh VM of `suite`; restored from the saved booted state unless restore=False."""

    def __call__(self, suite: str = ..., *, restore: bool = ...) -> QemuTarget: ...


@pytest.fixture(scope="session")
def vm_image_factory() -> VmImageFactory:
    """suite -> its cached VM image, built (and its booted state saved) on first use."""
    if os.geteuid() != 0:
        _unavailable("VM images need root to build (mmdebstrap, chroot, systemd-nspawn)")
    missing = [tool for tool in _HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        _unavailable(f"missing host tools {', '.join(missing)}: run tests/targets/host-deps.sh")
    images: dict[str, VmImage] = {}

    def get(suite: str) -> VmImage:
        if suite not in images:
            try:
                image = ensure_vm_image(suite)
            except MissingHostTool as exc:
                _unavailable(str(exc))
            save_booted_state(image)
            images[suite] = image
        return images[suite]

    return get


@pytest.fixture
def vm_target_factory(
    vm_image_factory: VmImageFactory, request: pytest.FixtureRequest
) -> Iterator[VmTargetFactory]:
    """Starts fresh VMs for one test and tears all of them down after it."""
    started: list[QemuTarget] = []
    default_suite = os.environ.get("IMAGEPREP_TEST_SUITE", DEFAULT_SUITE)
    with ExitStack() as teardown:

        def start(suite: str = default_suite, *, restore: bool = True) -> QemuTarget:
            target = teardown.enter_context(QemuTarget(vm_image_factory(suite), restore=restore))
            started.append(target)
            return target

        yield start
        for target in started:
            request.node.add_report_section(
                "teardown", f"console of {target.name}", target.console_tail(_CONSOLE_LINES)
            )


@pytest.fixture
def vm_target(vm_target_factory: VmTargetFactory) -> QemuTarget:
    """A fresh VM restored from the saved booted state: azureuser key login on 127.0.0.1."""
    return vm_target_factory()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("IMAGEPREP_REQUIRE_TARGETS") == "1":
        pytest.fail(f"VM targets are required here but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)
