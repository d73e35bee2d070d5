"""Preflight on real targets: a busy package manager stops the run with the VM untouched."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.integration.cli_run import CliResult, imageprep, key_args
from tests.integration.conftest import TargetFactory
from tests.targets.nspawn import NspawnTarget

pytestmark = pytest.mark.integration

PREFLIGHT_FAILED = 3


def _no_waiting_profile(directory: Path) -> list[str]:
    """A user profile that overrides the built-in debian one: the check does not retry.

    The built-in step waits out a short apt-daily run (3 retries, 10 s apart); the test
    only needs its verdict.
    """
    directory.mkdir()
    (directory / "debian.yaml").write_text(
        "id: debian\n"
        "description: Debian without waiting for apt\n"
        "extends: debian\n"
        "match: {ids: [debian], version: '>=11'}\n"
        "phases:\n"
        "  preflight:\n"
        "    - name: no-package-manager-running\n"
        "      override: true\n"
        "      retries: 0\n"
    )
    return ["--profiles-dir", str(directory)]


def _in_target(target: NspawnTarget, *command: str) -> None:
    """Start a command as a transient unit inside the target; it keeps running."""
    # ssh hands the remote shell one command line: quote it ourselves.
    remote = shlex.join(["sudo", "systemd-run", "--quiet", "--collect", *command])
    subprocess.run(
        target.ssh_command(remote),
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _check(target: NspawnTarget, tmp_path: Path) -> CliResult:
    profile = _no_waiting_profile(tmp_path / "profiles")
    return imageprep("check", *key_args(target), *profile, run_dir=tmp_path / "run")


def test_held_dpkg_lock_fails_preflight(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A process holding dpkg's lock is named and the check exits 3."""
    target = target_factory()
    _in_target(target, "flock", "/var/lib/dpkg/lock-frontend", "sleep", "300")
    result = _check(target, tmp_path)
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert "holds /var/lib/dpkg/lock-frontend" in result.report["message"]


def test_running_dpkg_fails_preflight(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A process called dpkg is named and the check exits 3."""
    target = target_factory()
    _in_target(target, "/bin/sh", "-c", "cp /bin/sleep /run/dpkg && exec /run/dpkg 300")
    result = _check(target, tmp_path)
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert "a package manager is running: dpkg" in result.report["message"]


def test_idle_target_passes_the_check(target_factory: TargetFactory, tmp_path: Path) -> None:
    """With nothing running, the same check passes (the two tests above are not vacuous)."""
    target = target_factory()
    result = _check(target, tmp_path)
    assert result.exit_code == 0, result.stderr[-2000:]
