"""Schema validation of profiles and playbooks: every problem located as file:line:col."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from agent.catalog import load_file
from agent.errors import SchemaError
from agent.records import Step, parse_version_range
from agent.schema import Playbook, StepModel, StepOverride
from agent.yamlload import load_yaml, validate_document

PROFILE_HEAD = """\
id: demo
description: A demo profile
phases:
  cleanup:
"""


def problems_of(tmp_path: Path, text: str, kind: str = "profile") -> list[str]:
    path = tmp_path / "demo.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(SchemaError) as info:
        load_file(path, "distro_profiles/demo.yaml", kind)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def test_malformed_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    """Broken YAML is reported at the position the parser stopped, with its message."""
    problems = problems_of(tmp_path, "id: demo\ndescription: [unclosed\nphases: {}\n")
    assert len(problems) == 1
    assert problems[0].startswith("distro_profiles/demo.yaml:3:")
    assert "YAML error" in problems[0]


def test_unknown_key_points_at_the_key_and_suggests_the_right_one(tmp_path: Path) -> None:
    """A typo in a field name is located at the key and gets a did-you-mean hint."""
    problems = problems_of(
        tmp_path,
        PROFILE_HEAD
        + "    - name: a\n      description: A step\n      run: echo\n      tiemout: 5\n",
    )
    assert problems == [
        'distro_profiles/demo.yaml:8:7: phases.cleanup[0]: unknown field "tiemout" '
        '(did you mean "timeout"?)'
    ]


def test_wrong_type_says_what_was_expected_and_what_came(tmp_path: Path) -> None:
    """A string where a positive integer belongs is reported at the value."""
    problems = problems_of(
        tmp_path,
        PROFILE_HEAD
        + "    - name: a\n      description: A step\n      run: echo\n      timeout: fast\n",
    )
    assert problems == [
        "distro_profiles/demo.yaml:8:16: phases.cleanup[0].timeout: "
        'expected an integer > 0 (seconds), got "fast"'
    ]


def test_destructive_step_with_retries_is_refused_at_retries(tmp_path: Path) -> None:
    """The point of no return may not be retried; the error points at retries."""
    problems = problems_of(
        tmp_path,
        PROFILE_HEAD
        + "    - name: a\n      description: A step\n      run: echo\n"
        + "      destructive: true\n      retries: 2\n",
    )
    assert problems == [
        "distro_profiles/demo.yaml:9:16: phases.cleanup[0].retries: "
        "a destructive step may not be retried (retries must be 0)"
    ]


def test_destructive_step_must_abort_on_failure() -> None:
    """A destructive step built in code is held to the same rule as one from YAML."""
    with pytest.raises(ValueError, match="on_failure: abort"):
        Step(name="x", description="X", run="true", destructive=True, on_failure="continue")


def test_duplicate_step_names_point_at_the_second(tmp_path: Path) -> None:
    """Two steps of one phase with one name are refused at the second name."""
    problems = problems_of(
        tmp_path,
        PROFILE_HEAD
        + "    - name: a\n      description: A step\n      run: echo\n"
        + "    - name: a\n      description: Again\n      run: echo\n",
    )
    assert problems == [
        'distro_profiles/demo.yaml:8:13: phases.cleanup[1].name: duplicate step name "a" '
        "in phase cleanup (first at phases.cleanup[0])"
    ]


def test_bad_slug_is_refused_at_the_name(tmp_path: Path) -> None:
    """Step names are slugs; anything else is reported at the value."""
    problems = problems_of(
        tmp_path,
        PROFILE_HEAD + "    - name: Bad_Name\n      description: A step\n      run: echo\n",
    )
    assert len(problems) == 1
    assert problems[0].startswith("distro_profiles/demo.yaml:5:13: phases.cleanup[0].name: ")
    assert 'got "Bad_Name"' in problems[0]


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    """PyYAML would keep the last of two equal keys silently; we refuse them."""
    problems = problems_of(tmp_path, "id: demo\nid: other\ndescription: X\n")
    assert problems == ['distro_profiles/demo.yaml:2:1: duplicate key "id" (first at line 1)']


def test_missing_field_points_at_the_mapping(tmp_path: Path) -> None:
    """A step without run is reported at the step, naming the missing field."""
    problems = problems_of(tmp_path, PROFILE_HEAD + "    - name: a\n      description: A step\n")
    assert problems == [
        'distro_profiles/demo.yaml:5:7: phases.cleanup[0]: missing required field "run"'
    ]


def test_description_with_trailing_period_is_refused(tmp_path: Path) -> None:
    """Descriptions are one line without a trailing period (virt-sysprep headings)."""
    problems = problems_of(
        tmp_path, PROFILE_HEAD + "    - name: a\n      description: Does it.\n      run: echo\n"
    )
    assert len(problems) == 1
    assert "6:20: phases.cleanup[0].description: expected a one-line description" in problems[0]


def test_all_problems_of_a_file_are_reported_together(tmp_path: Path) -> None:
    """Field errors and cross-field rules of one file arrive in one SchemaError, in order."""
    problems = problems_of(
        tmp_path,
        PROFILE_HEAD
        + "    - name: a\n      description: A step\n      run: echo\n      timeout: 0\n"
        + "    - name: a\n      description: A step\n      run: echo\n",
    )
    assert [p.split(": ")[1] for p in problems] == [
        "phases.cleanup[0].timeout",
        "phases.cleanup[1].name",
    ]


def test_override_needs_extends(tmp_path: Path) -> None:
    """override/drop/before/after only make sense in a profile that extends another."""
    problems = problems_of(tmp_path, PROFILE_HEAD + "    - name: a\n      drop: true\n")
    assert problems == [
        "distro_profiles/demo.yaml:6:13: phases.cleanup[0].drop: drop: only a profile that "
        "extends another may override, drop or position steps (this one has no extends)"
    ]


def test_profiles_may_not_use_the_backup_phase(tmp_path: Path) -> None:
    """The backup phase belongs to the backup provider."""
    problems = problems_of(
        tmp_path,
        "id: demo\ndescription: X\nphases:\n  backup:\n    - name: a\n      description: A\n"
        "      run: echo\n",
    )
    assert len(problems) == 1
    assert problems[0].startswith("distro_profiles/demo.yaml:4:3: phases.backup: ")


def test_bad_when_expression_is_refused_at_load_time(tmp_path: Path) -> None:
    """A `when` outside the safe subset fails validation, before any target is contacted."""
    problems = problems_of(
        tmp_path,
        PROFILE_HEAD
        + "    - name: a\n      description: A\n      run: echo\n      when: facts.x[0]\n",
    )
    assert len(problems) == 1
    assert "8:13: phases.cleanup[0].when: " in problems[0]
    assert "subscripts" in problems[0]


def test_bad_version_range_is_refused(tmp_path: Path) -> None:
    """A match version must be clauses like >=20.04,<25."""
    problems = problems_of(
        tmp_path, "id: demo\ndescription: X\nmatch:\n  ids: [debian]\n  version: '~12'\n"
    )
    assert len(problems) == 1
    assert problems[0].startswith("distro_profiles/demo.yaml:5:12: match.version: ")


def test_version_range_compares_numerically() -> None:
    """22.10 is above 22.4; every clause must hold; a missing VERSION_ID never matches."""
    rng = parse_version_range(">=20.04,<=24.04")
    assert rng.contains("22.04")
    assert rng.contains("24.04")
    assert not rng.contains("24.10")
    assert not rng.contains("18.04")
    assert not rng.contains(None)
    assert parse_version_range(">22.4").contains("22.10")


def test_playbook_backup_must_come_first(tmp_path: Path) -> None:
    """Nothing may change before the backup: the backup phase, if listed, comes first."""
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ndescription: P\nphases: [preflight, backup]\nrequires_backup: true\n")
    with pytest.raises(SchemaError) as info:
        validate_document(load_yaml(path, "playbooks/p.yaml"), Playbook)
    assert [str(p) for p in info.value.problems] == [
        'playbooks/p.yaml:3:21: phases[1]: "backup" must be the first phase: '
        "nothing may change before it"
    ]


def test_playbook_requiring_backup_needs_a_backup_phase(tmp_path: Path) -> None:
    """requires_backup: true without a backup phase could never be satisfied."""
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ndescription: P\nphases: [preflight]\nrequires_backup: true\n")
    with pytest.raises(SchemaError) as info:
        validate_document(load_yaml(path, "playbooks/p.yaml"), Playbook)
    assert "4:18: requires_backup: " in str(info.value.problems[0])


def test_empty_file_is_reported(tmp_path: Path) -> None:
    """An empty file is a problem of its own, not a confusing type error."""
    assert problems_of(tmp_path, "") == ["distro_profiles/demo.yaml:1:1: the file is empty"]


def test_playbook_in_a_profiles_directory_is_named_as_such(tmp_path: Path) -> None:
    """A playbook dropped into a profiles directory is reported as misplaced."""
    problems = problems_of(tmp_path, "name: p\ndescription: P\nphases: [preflight]\n")
    assert len(problems) == 1
    assert "looks like a playbook" in problems[0]


STEP_FIELDS = [f.name for f in dataclasses.fields(Step)]


@pytest.mark.parametrize("field", STEP_FIELDS)
def test_every_step_field_is_checked_alike_in_a_step_and_an_override(field: str) -> None:
    """The override model is generated from the step: same fields, same bounds, same words."""
    step_info = StepModel.model_fields[field]
    override_info = StepOverride.model_fields[field]
    assert override_info.json_schema_extra == step_info.json_schema_extra
    assert override_info.is_required() == (field == "name")


def test_override_has_nothing_but_the_step_fields_and_its_marker() -> None:
    """No hand-copied field can drift: the step's fields plus override (and run_file)."""
    assert set(StepOverride.model_fields) == {*STEP_FIELDS, "override", "run_file"}


def test_override_value_is_refused_with_the_step_wording(tmp_path: Path) -> None:
    """A bad value in an override reads like the same bad value in a step."""
    base = PROFILE_HEAD + "    - name: a\n      description: A step\n      run: echo\n"
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "base.yaml").write_text(base)
    (directory / "child.yaml").write_text(
        "id: child\ndescription: Child\nextends: demo\nphases:\n  cleanup:\n"
        "    - {name: a, override: true, timeout: 0}\n"
    )
    with pytest.raises(SchemaError) as info:
        load_file(directory / "child.yaml", "distro_profiles/child.yaml")
    assert [str(p) for p in info.value.problems] == [
        "distro_profiles/child.yaml:6:42: phases.cleanup[0].timeout: "
        "expected an integer > 0 (seconds), got 0"
    ]
