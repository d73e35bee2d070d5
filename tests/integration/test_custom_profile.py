"""The README's custom-profile example, chosen by --profile auto on a real Debian 12 target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cli_run import imageprep, key_args
from tests.integration.conftest import TargetFactory
from tests.unit.test_profile_ties import README_EXAMPLE

pytestmark = pytest.mark.integration


def test_readme_example_extending_debian_is_chosen_by_auto(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """`check --profiles-dir D` picks my-debian (extends debian) instead of 'ambiguous'."""
    target = target_factory()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "my-debian.yaml").write_text(README_EXAMPLE)
    result = imageprep(
        "check", *key_args(target), "--profiles-dir", str(profiles), run_dir=tmp_path / "run"
    )
    assert result.exit_code == 0, result.report.get("message")
    assert result.report["profile"] == "my-debian"
