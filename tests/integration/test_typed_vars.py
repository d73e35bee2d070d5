"""--var typed by the profile's default, on a real Debian target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cli_run import imageprep, key_args
from tests.integration.conftest import TargetFactory

pytestmark = pytest.mark.integration


def _without_cloud_init(root: Path) -> None:
    # Masked first: its units would fail without the program and the target boot degraded.
    for unit in ("cloud-init-local", "cloud-init", "cloud-config", "cloud-final"):
        (root / f"etc/systemd/system/{unit}.service").symlink_to("/dev/null")
    (root / "usr/bin/cloud-init").unlink()


def test_expect_cloud_init_false_skips_the_cloud_init_check(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """`--var expect_cloud_init=false` is false: a VM without cloud-init passes the check."""
    target = target_factory(prepare=_without_cloud_init)
    result = imageprep(
        "check", *key_args(target), "--var", "expect_cloud_init=false", run_dir=tmp_path / "r"
    )
    assert result.step("preflight/cloud-init-present")["status"] == "skipped"
    assert result.report["plan"]["vars"]["expect_cloud_init"] is False


def test_wrong_type_is_exit_2_naming_var_and_type(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """`--var min_free_mib=abc` is exit 2 with one line; no step runs."""
    target = target_factory()
    result = imageprep(
        "check", *key_args(target), "--var", "min_free_mib=abc", run_dir=tmp_path / "r"
    )
    assert result.exit_code == 2
    assert result.report["message"] == "--var min_free_mib: expected an integer, got 'abc'"
    assert result.report["steps"] == []
    assert "Traceback" not in result.stderr
