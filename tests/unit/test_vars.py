"""--var and --var-file: every var typed by its profile default; errors name var and type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.errors import ValidationError
from agent.outcome import ExitCode
from agent.plan import coerce_var


def _plan(*args: str, profile: str = "debian") -> Any:
    result = CliRunner().invoke(main, ["plan", "--profile", profile, "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _refused(*args: str, profile: str = "debian") -> str:
    result = CliRunner().invoke(main, ["plan", "--profile", profile, *args])
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def _step(plan: Any, name: str) -> Any:
    return next(s for s in plan["steps"] if s["name"] == name)


def test_bool_false_turns_the_domain_check_on() -> None:
    """--var allow_domain_joined=false is the boolean false: the safety check runs."""
    plan = _plan("--var", "allow_domain_joined=false", profile="windows-server")
    assert plan["vars"]["allow_domain_joined"] is False
    assert _step(plan, "not-domain-joined")["condition"] is True


def test_bool_false_skips_cloud_init_steps() -> None:
    """--var expect_cloud_init=false is false, so steps gated on it are skipped."""
    plan = _plan("--var", "expect_cloud_init=false")
    assert plan["vars"]["expect_cloud_init"] is False
    assert _step(plan, "cloud-init-present")["condition"] is False


def test_int_var_becomes_an_integer() -> None:
    """--var min_free_mib=512 is the integer 512."""
    assert _plan("--var", "min_free_mib=512")["vars"]["min_free_mib"] == 512


def test_int_var_refuses_text() -> None:
    """--var min_free_mib=abc is exit 2 naming the var and the expected type."""
    line = _refused("--var", "min_free_mib=abc")
    assert "min_free_mib" in line
    assert "an integer" in line


def test_bool_var_refuses_other_words() -> None:
    """--var expect_cloud_init=maybe is exit 2 naming 'true or false'."""
    line = _refused("--var", "expect_cloud_init=maybe")
    assert "expect_cloud_init" in line
    assert "true or false" in line


def test_list_var_splits_on_commas_and_spaces() -> None:
    """A list var on the command line is comma- or space-separated."""
    plan = _plan("--var", "history_files=.a, .b .c,.d")
    assert plan["vars"]["history_files"] == [".a", ".b", ".c", ".d"]


def test_str_var_stays_text() -> None:
    """A string var keeps its text, even one that looks like a number."""
    assert _plan("--var", "deprovision_user=1234")["vars"]["deprovision_user"] == "1234"


def test_unknown_var_is_named() -> None:
    """A var the profile lacks is exit 2 naming it."""
    assert "no_such_var" in _refused("--var", "no_such_var=1")


def test_huge_integer_text_gives_a_bounded_line() -> None:
    """A 5000-digit value is refused with a short excerpt, not the whole value."""
    line = _refused("--var", "min_free_mib=" + "9" * 5000)
    assert "an integer" in line
    assert len(line) < 300


def test_var_file_values_are_typed(tmp_path: Path) -> None:
    """A --var-file mapping sets typed vars."""
    path = tmp_path / "vars.yaml"
    path.write_text("min_free_mib: 300\nexpect_cloud_init: false\nhistory_files: [.x]\n")
    plan = _plan("--var-file", str(path))
    assert plan["vars"]["min_free_mib"] == 300
    assert plan["vars"]["expect_cloud_init"] is False
    assert plan["vars"]["history_files"] == [".x"]


def test_var_file_wrong_type_names_file_and_line(tmp_path: Path) -> None:
    """A wrongly typed value in a var file is exit 2 naming FILE:LINE, var and type."""
    path = tmp_path / "vars.yaml"
    path.write_text("min_free_mib: 300\nexpect_cloud_init: 7\n")
    line = _refused("--var-file", str(path))
    assert f"{path}:2" in line
    assert "expect_cloud_init" in line
    assert "true or false" in line


def test_var_file_unknown_var_names_file_and_line(tmp_path: Path) -> None:
    """A var the profile lacks, in a var file, names FILE:LINE."""
    path = tmp_path / "vars.yaml"
    path.write_text("# vars\n\nnope: 1\n")
    assert f"{path}:3" in _refused("--var-file", str(path))


def test_var_file_must_be_a_mapping(tmp_path: Path) -> None:
    """A var file that is a list is exit 2 naming the file."""
    path = tmp_path / "vars.yaml"
    path.write_text("- a\n- b\n")
    assert str(path) in _refused("--var-file", str(path))


def test_var_file_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    """Malformed YAML in a var file is exit 2 naming FILE:LINE."""
    path = tmp_path / "vars.yaml"
    path.write_text("a: 1\nb: [1\n")
    assert f"{path}:" in _refused("--var-file", str(path))


def test_var_file_non_name_key_is_refused(tmp_path: Path) -> None:
    """A key that cannot be a var name (here the YAML boolean yes) is exit 2 with its line."""
    path = tmp_path / "vars.yaml"
    path.write_text("min_free_mib: 1\nyes: 2\n")
    assert f"{path}:2" in _refused("--var-file", str(path))


def test_command_line_wins_over_var_file(tmp_path: Path) -> None:
    """--var beats --var-file for the same var, whatever their order on the line."""
    path = tmp_path / "vars.yaml"
    path.write_text("min_free_mib: 300\n")
    plan = _plan("--var", "min_free_mib=400", "--var-file", str(path))
    assert plan["vars"]["min_free_mib"] == 400


def test_command_line_fixes_a_bad_file_value(tmp_path: Path) -> None:
    """A var overridden by --var is not checked from the file it no longer comes from."""
    path = tmp_path / "vars.yaml"
    path.write_text("min_free_mib: lots\n")
    assert _plan("--var-file", str(path), "--var", "min_free_mib=5")["vars"]["min_free_mib"] == 5


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        ("yes", False, True),
        ("OFF", True, False),
        (" 42 ", 1, 42),
        ("-3", 1, -3),
        ("", ["x"], []),
        (True, False, True),
        (["a"], ["b"], ["a"]),
    ],
)
def test_coerce_var_accepts(value: Any, default: Any, expected: Any) -> None:
    """coerce_var reads text as the default's type and keeps values that already fit."""
    assert coerce_var("v", value, default) == expected


@pytest.mark.parametrize(
    ("value", "default"),
    [("1.5", 1), ("5_000", 1), (True, 1), (1, True), ([1], ["a"]), (3, "s"), ({"a": 1}, "s")],
)
def test_coerce_var_refuses(value: Any, default: Any) -> None:
    """coerce_var refuses a value of another type (True is not an integer, 1 not a bool)."""
    with pytest.raises(ValidationError, match="var v: expected"):
        coerce_var("v", value, default)


def test_journal_records_typed_vars_that_rebuild_the_same_plan() -> None:
    """The journal header keeps vars as typed; a resume rebuilds the identical plan from it."""
    from agent.catalog import Catalog
    from agent.journal import plan_hash
    from agent.plan import Selection, plan_for
    from agent.runner import RunRequest, _header
    from agent.targets import parse_target

    catalog = Catalog.load()
    given = {"min_free_mib": "300", "expect_cloud_init": "no", "history_files": ".a,.b"}

    def build(overrides: dict[str, Any]) -> Any:
        return plan_for(
            catalog,
            playbook_name="check",
            profile_id="debian",
            facts=None,
            var_overrides=overrides,
            selection=Selection(),
        )

    class Recorded:
        def as_dict(self) -> dict[str, Any]:
            return {}

    plan = build(given)
    request = RunRequest(target=parse_target("ssh://u@h"), profile="debian", var_overrides=given)
    header = json.loads(json.dumps(_header(request, "r1", catalog, plan, Recorded())))  # type: ignore[arg-type]
    recorded = header["request"]["vars"]
    assert recorded == {
        "min_free_mib": 300,
        "expect_cloud_init": False,
        "history_files": [".a", ".b"],
    }
    assert plan_hash(build(recorded)) == header["plan_hash"]
