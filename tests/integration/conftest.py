"""Fixtures for integration tests against real, disposable Debian targets (tests/targets).

target_image   session: the cached image (built on first use, about 35 s; then reused)
target         a fresh booted target, torn down after the test
target_factory call it (optionally with prepare=...) for more or customised targets

Without root or the host tools these tests skip; with IMAGEPREP_REQUIRE_TARGETS=1 (CI) they
fail instead, so a misconfigured runner cannot pass by skipping everything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from typing import NoReturn, Protocol

import pytest

from tests.targets.nspawn import NspawnTarget, Prepare
from tests.targets.rootfs import (
    DEFAULT_SUITE,
    ImageSpec,
    MissingHostTool,
    TargetImage,
    ensure_image,
)

_HOST_TOOLS = ("systemd-nspawn", "nsenter", "ip", "mount", "ssh")
_REQUIRE_TARGETS = "IMAGEPREP_REQUIRE_TARGETS"
_CONSOLE_LINES = 60


class TargetFactory(Protocol):
    """Starts a fresh target; `prepare` edits its root filesystem before it boots."""

    def __call__(self, *, prepare: Prepare | None = None) -> NspawnTarget: ...


@pytest.fixture(scope="session")
def target_image() -> TargetImage:
    """The cached Debian image every target boots from."""
    if os.geteuid() != 0:
        _unavailable("targets need root (overlay mounts, network namespaces, systemd-nspawn)")
    missing = [tool for tool in _HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        _unavailable(f"missing host tools {', '.join(missing)}: run tests/targets/host-deps.sh")
    try:
        return ensure_image(ImageSpec(suite=os.environ.get("IMAGEPREP_TEST_SUITE", DEFAULT_SUITE)))
    except MissingHostTool as exc:
        _unavailable(str(exc))


@pytest.fixture
def target_factory(
    target_image: TargetImage, request: pytest.FixtureRequest
) -> Iterator[TargetFactory]:
    """Starts fresh targets for one test and tears all of them down after it."""
    started: list[NspawnTarget] = []
    with ExitStack() as teardown:

        def start(*, prepare: Prepare | None = None) -> NspawnTarget:
            target = teardown.enter_context(NspawnTarget(target_image, prepare=prepare))
            started.append(target)
            return target

        yield start
        # Shown with the test's report when it fails: what the guests said while it ran.
        for target in started:
            request.node.add_report_section(
                "teardown", f"console of {target.name}", target.console_tail(_CONSOLE_LINES)
            )


@pytest.fixture
def target(target_factory: TargetFactory) -> NspawnTarget:
    """A fresh booted target: azureuser key login on target.host:22, torn down afterwards."""
    return target_factory()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(_REQUIRE_TARGETS) == "1":
        pytest.fail(f"test targets are required here but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)
