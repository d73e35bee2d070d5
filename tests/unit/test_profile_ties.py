"""--profile auto with user profiles: a derived profile beats its base; validate warns of ties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.catalog import Catalog
from agent.cli import main
from agent.errors import CatalogError

DEBIAN_12 = {"ID": "debian", "ID_LIKE": "", "VERSION_ID": "12"}

# The README's custom-profile example, as written there.
README_EXAMPLE = """\
id: my-debian
description: Our Debian image with an extra cleanup
extends: debian
match: {ids: [debian], version: ">=12,<14"}
vars:
  app_dir: /opt/app
phases:
  cleanup:
    - name: app-cache
      description: Delete the application's cache
      after: tmp-files
      run: rm -rf {{ vars.app_dir }}/cache
    - name: journal-files
      drop: true
    - name: cloud-init-clean
      override: true
      timeout: 120
"""


def _dir(tmp_path: Path, **files: str) -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir()
    for name, text in files.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory


def _sibling(pid: str, version: str = ">=12,<14") -> str:
    return (
        f"id: {pid}\ndescription: A profile for Acme Linux\nextends: linux-base\n"
        f'match: {{ids: [acme], version: "{version}"}}\n'
    )


def test_readme_example_is_chosen_over_its_base(tmp_path: Path) -> None:
    """The README's my-debian (extends debian) wins on Debian 12 instead of 'ambiguous'."""
    catalog = Catalog.load(profiles_dirs=[_dir(tmp_path, **{"my-debian": README_EXAMPLE})])
    assert catalog.match_profile(DEBIAN_12).id == "my-debian"


def test_base_still_matches_outside_the_derived_range(tmp_path: Path) -> None:
    """Debian 11 is outside my-debian's range: debian itself is chosen."""
    catalog = Catalog.load(profiles_dirs=[_dir(tmp_path, **{"my-debian": README_EXAMPLE})])
    assert catalog.match_profile({**DEBIAN_12, "VERSION_ID": "11"}).id == "debian"


def test_grandchild_beats_child_and_base(tmp_path: Path) -> None:
    """A profile extending a user profile that extends debian wins over both."""
    grandchild = (
        README_EXAMPLE.replace("id: my-debian", "id: my-debian-web")
        .replace("extends: debian", "extends: my-debian")
        .split("vars:")[0]
    )
    directory = _dir(tmp_path, **{"my-debian": README_EXAMPLE, "my-debian-web": grandchild})
    assert Catalog.load(profiles_dirs=[directory]).match_profile(DEBIAN_12).id == "my-debian-web"


def test_unrelated_profiles_that_tie_are_still_ambiguous(tmp_path: Path) -> None:
    """Two profiles that do not extend one another and match alike are still refused."""
    directory = _dir(tmp_path, a=_sibling("deb-a"), b=_sibling("deb-b"))
    with pytest.raises(CatalogError, match="ambiguous"):
        Catalog.load(profiles_dirs=[directory]).match_profile({**DEBIAN_12, "ID": "acme"})


def test_validate_warns_about_two_profiles_that_tie(tmp_path: Path) -> None:
    """validate exits 0 but warns, naming both profiles and a target they tie on."""
    directory = _dir(tmp_path, a=_sibling("deb-a"), b=_sibling("deb-b", ">=13"))
    result = CliRunner().invoke(main, ["validate", "--profiles-dir", str(directory)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.output
    assert "deb-a" in warnings[0]
    assert "deb-b" in warnings[0]
    assert "VERSION_ID=13" in warnings[0]


def test_validate_does_not_warn_about_a_derived_profile(tmp_path: Path) -> None:
    """The README example overlaps debian by design: no warning."""
    directory = _dir(tmp_path, **{"my-debian": README_EXAMPLE})
    result = CliRunner().invoke(main, ["validate", "--profiles-dir", str(directory)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_validate_does_not_warn_about_disjoint_ranges(tmp_path: Path) -> None:
    """Profiles for the same ID but disjoint versions never tie."""
    directory = _dir(tmp_path, a=_sibling("deb-a", ">=20,<21"), b=_sibling("deb-b", ">=21"))
    result = CliRunner().invoke(main, ["validate", "--profiles-dir", str(directory)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_builtin_profiles_do_not_tie() -> None:
    """No two built-in profiles tie on any target their matches name."""
    assert Catalog.load().ties() == []


def test_json_plan_names_the_derived_profile_file(tmp_path: Path) -> None:
    """profiles show my-debian says it extends debian (sanity of the example)."""
    directory = _dir(tmp_path, **{"my-debian": README_EXAMPLE})
    result = CliRunner().invoke(
        main,
        ["plan", "--profile", "my-debian", "--profiles-dir", str(directory), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["profile"]["id"] == "my-debian"


def _windows(pid: str, build: str) -> str:
    return (
        f"id: {pid}\ndescription: A Windows profile\nextends: windows-server\n"
        f'match: {{windows: {{product_type: server, build: "{build}"}}}}\n'
    )


def test_two_windows_profiles_that_tie_are_reported(tmp_path: Path) -> None:
    """Two unrelated Windows profiles for the same builds are named as a tie."""
    directory = _dir(
        tmp_path, **{"win-a": _windows("win-a", ">=20348"), "win-b": _windows("win-b", ">=17763")}
    )
    ties = Catalog.load(profiles_dirs=[directory]).ties()
    assert any("win-a" in tie and "win-b" in tie for tie in ties)
