"""Machine-readable contracts: `imageprep schema`, and --format json on the listings.

The schemas are checked with an independent validator (jsonschema) against the real
documents: every built-in profile and playbook, and a result.json of the CLI's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from agent.cli import main
from agent.result_schema import ResultDocument

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("kind", ["result", "profile", "playbook"])
def test_schema_is_valid_json_schema(kind: str) -> None:
    """Each schema is itself a valid draft 2020-12 JSON Schema."""
    jsonschema.Draft202012Validator.check_schema(_cli("schema", kind))


@pytest.mark.parametrize(
    "path", sorted((REPO / "distro_profiles").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_builtin_profile_fits_the_profile_schema(path: Path) -> None:
    """The profile schema accepts every built-in profile as written."""
    jsonschema.validate(yaml.safe_load(path.read_text()), _cli("schema", "profile"))


@pytest.mark.parametrize("path", sorted((REPO / "playbooks").glob("*.yaml")), ids=lambda p: p.name)
def test_every_builtin_playbook_fits_the_playbook_schema(path: Path) -> None:
    """The playbook schema accepts every built-in playbook as written."""
    jsonschema.validate(yaml.safe_load(path.read_text()), _cli("schema", "playbook"))


def test_profile_schema_rejects_an_unknown_key() -> None:
    """A misspelt key in a profile fails the schema, as it fails `validate`."""
    profile = yaml.safe_load((REPO / "distro_profiles" / "debian.yaml").read_text())
    profile["extend"] = profile.pop("extends")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(profile, _cli("schema", "profile"))


def test_result_model_describes_every_field_the_runner_writes() -> None:
    """result.json's schema names each top-level field a run writes (see test_console_ci)."""
    fields = set(ResultDocument.model_fields)
    assert {"run_id", "status", "exit_code", "steps", "backup", "powered_off"} <= fields


def test_profiles_list_json() -> None:
    """profiles list --format json lists debian with its file and match."""
    profiles = {p["id"]: p for p in _cli("profiles", "list", "--format", "json")}
    assert profiles["debian"]["file"].endswith("debian.yaml")
    assert "debian" in profiles["debian"]["match"]["ids"]


def test_profiles_show_json_has_phases_and_steps() -> None:
    """profiles show ID --format json gives every phase with its steps."""
    shown = _cli("profiles", "show", "debian", "--format", "json")
    names = [step["name"] for step in shown["phases"]["deprovision"]]
    assert "waagent-deprovision" in names


def test_playbooks_list_json() -> None:
    """playbooks list --format json names each playbook with its phases."""
    books = {b["name"]: b for b in _cli("playbooks", "list", "--format", "json")}
    assert books["check"]["requires_backup"] is False
    assert books["generalize"]["phases"][0] == "backup"


def test_validate_json_reports_problems_with_positions(tmp_path: Path) -> None:
    """validate --format json on a bad file: exit 2 and the problem's file, line and field."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndescription: d\nphases: [preflight]\nrequires_backup: maybe\n")
    result = CliRunner().invoke(main, ["validate", "--format", "json", str(bad)])
    assert result.exit_code == 2
    report = json.loads(result.output)
    assert report["valid"] is False
    assert report["problems"][0]["line"] == 4
