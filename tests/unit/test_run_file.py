"""run_file: a step's script read from a file beside its profile (agent.scriptfiles)."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.catalog import Catalog, validate_files
from agent.cli import main
from agent.errors import SchemaError
from agent.journal import plan_hash
from agent.limits import MAX_SCRIPT_BYTES
from agent.plan import Selection, plan_for
from agent.scriptfiles import inline_run_files
from agent.yamlload import load_yaml

SCRIPT = "set -eu\n# cited: somewhere\necho {{ vars.who }}\n"

BASE = """\
id: base
description: Base
vars: {who: nobody}
phases:
  cleanup:
    - name: one
      description: One
      run_file: base.d/one.sh
    - {name: two, description: Two, run: echo two}
"""

PLAYBOOK = "name: clean\ndescription: Clean\nphases: [cleanup]\nrequires_backup: false\n"


def profiles(tmp_path: Path, text: str = BASE, script: str | None = SCRIPT) -> Path:
    """A profiles directory with base.yaml and (unless None) base.d/one.sh."""
    directory = tmp_path / "p"
    (directory / "base.d").mkdir(parents=True)
    (directory / "base.yaml").write_text(textwrap.dedent(text))
    if script is not None:
        (directory / "base.d" / "one.sh").write_text(script)
    return directory


def load(directory: Path) -> Catalog:
    return Catalog.load(profiles_dirs=[directory], builtin=False)


def problem_lines(directory: Path) -> list[str]:
    with pytest.raises(SchemaError) as info:
        load(directory)
    return [str(p) for p in info.value.problems]


def test_run_file_text_becomes_the_steps_run(tmp_path: Path) -> None:
    """The step's run is the file's text, byte for byte."""
    step = load(profiles(tmp_path)).get_profile("base").phases["cleanup"][0]
    assert step.run == SCRIPT


def test_override_run_replaces_a_run_file_script(tmp_path: Path) -> None:
    """A derived profile's run: replaces the base step's run_file script."""
    directory = profiles(tmp_path)
    (directory / "child.yaml").write_text(
        "id: child\ndescription: Child\nextends: base\nphases:\n  cleanup:\n"
        "    - {name: one, override: true, run: echo mine}\n"
    )
    assert load(directory).get_profile("child").phases["cleanup"][0].run == "echo mine"


def test_override_run_file_replaces_an_inline_run(tmp_path: Path) -> None:
    """A derived profile's run_file replaces the base step's inline run."""
    directory = profiles(tmp_path)
    (directory / "child.d").mkdir()
    (directory / "child.d" / "two.sh").write_text("echo two, from a file\n")
    (directory / "child.yaml").write_text(
        "id: child\ndescription: Child\nextends: base\nphases:\n  cleanup:\n"
        "    - {name: two, override: true, run_file: child.d/two.sh}\n"
    )
    step = load(directory).get_profile("child").phases["cleanup"][1]
    assert step.run == "echo two, from a file\n"


def test_run_and_run_file_together_are_refused_at_the_key(tmp_path: Path) -> None:
    """Both run and run_file: one problem at the run_file key's line."""
    directory = profiles(
        tmp_path,
        BASE.replace("run_file: base.d/one.sh", "run_file: base.d/one.sh\n      run: echo x"),
    )
    assert problem_lines(directory) == [
        f"{directory}/base.yaml:8:7: phases.cleanup[0].run_file: give run or run_file, not both"
    ]


def test_missing_file_names_the_yaml_line_and_field(tmp_path: Path) -> None:
    """A run_file that does not exist: the YAML file, the key's line and the field."""
    directory = profiles(tmp_path, script=None)
    (line,) = problem_lines(directory)
    assert line.startswith(
        f"{directory}/base.yaml:8:7: phases.cleanup[0].run_file: base.d/one.sh: "
    )
    assert "no such file" in line


@pytest.mark.parametrize("name", ["../one.sh", "base.d/../../one.sh", "/etc/passwd"])
def test_paths_leaving_the_directory_are_refused(tmp_path: Path, name: str) -> None:
    """An absolute path or one with .. is refused before anything is opened."""
    (tmp_path / "one.sh").write_text("echo outside\n")
    directory = profiles(tmp_path, BASE.replace("base.d/one.sh", name))
    (line,) = problem_lines(directory)
    assert ":8:7: phases.cleanup[0].run_file: " in line
    assert ("relative" in line) if name.startswith("/") else ("may not contain .." in line)


def test_symlink_leading_out_is_refused(tmp_path: Path) -> None:
    """A symbolic link inside the directory that points outside it is refused."""
    (tmp_path / "secret").write_text("echo secret\n")
    directory = profiles(tmp_path, script=None)
    os.symlink(tmp_path / "secret", directory / "base.d" / "one.sh")
    (line,) = problem_lines(directory)
    assert "leads outside the profile's directory" in line


def test_symlink_within_the_directory_is_followed(tmp_path: Path) -> None:
    """A symbolic link to another file beside the profile is read like the file."""
    directory = profiles(tmp_path, script=None)
    (directory / "shared.sh").write_text(SCRIPT)
    os.symlink("../shared.sh", directory / "base.d" / "one.sh")
    assert load(directory).get_profile("base").phases["cleanup"][0].run == SCRIPT


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO named as run_file is refused at once (no writer is waited for)."""
    directory = profiles(tmp_path, script=None)
    os.mkfifo(directory / "base.d" / "one.sh")
    (line,) = problem_lines(directory)
    assert "not a regular file (a FIFO)" in line


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    """A script larger than MAX_SCRIPT_BYTES is refused with the limit named."""
    directory = profiles(tmp_path, script="#" * (MAX_SCRIPT_BYTES + 1))
    (line,) = problem_lines(directory)
    assert f"more than the {MAX_SCRIPT_BYTES} accepted" in line


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    """A script that is not UTF-8 is refused with the byte named."""
    directory = profiles(tmp_path, script=None)
    (directory / "base.d" / "one.sh").write_bytes(b"echo \xff\n")
    (line,) = problem_lines(directory)
    assert line.endswith("base.d/one.sh: not UTF-8 text (byte 6)")


def test_unknown_var_in_a_script_is_located_at_its_run_file(tmp_path: Path) -> None:
    """A template error inside a script file names the YAML file and the run_file line."""
    directory = profiles(tmp_path, script="echo {{ vars.nope }}\n")
    (line,) = problem_lines(directory)
    assert line.startswith(f"{directory}/base.yaml:8:17: phases.cleanup[0].run: ")
    assert "nope" in line


def test_validate_reports_the_problem_with_the_others(tmp_path: Path) -> None:
    """validate lists a run_file problem together with the file's schema problems."""
    directory = profiles(tmp_path, BASE.replace("run: echo two", "run: echo two, timeout: 0"), None)
    problems = [str(p) for p in validate_files([directory / "base.yaml"])]
    assert [p.split(": ")[1] for p in problems] == [
        "phases.cleanup[0].run_file",
        "phases.cleanup[1].timeout",
    ]


def test_run_file_on_a_drop_entry_is_an_unknown_field(tmp_path: Path) -> None:
    """A drop entry takes no script: its run_file is refused by the schema, nothing read."""
    directory = profiles(tmp_path)
    (directory / "child.yaml").write_text(
        "id: child\ndescription: Child\nextends: base\nphases:\n  cleanup:\n"
        "    - {name: one, drop: true, run_file: base.d/one.sh}\n"
    )
    (line,) = problem_lines(directory)
    assert line == (
        f'{directory}/child.yaml:6:31: phases.cleanup[0]: unknown field "run_file" '
        "(expected one of: name, drop)"
    )


def test_the_file_node_tree_is_left_as_it_was(tmp_path: Path) -> None:
    """The located copy does not change the loaded document (aliases share its nodes)."""
    directory = profiles(tmp_path)
    doc = load_yaml(directory / "base.yaml")
    inline_run_files(doc, directory)
    assert doc.node_at(("phases", "cleanup", 0, "run")) is doc.node_at(("phases", "cleanup", 0))


def test_files_read_are_reported_with_their_hash(tmp_path: Path) -> None:
    """inline_run_files returns each file it read, resolved, with its sha256."""
    directory = profiles(tmp_path)
    result = inline_run_files(load_yaml(directory / "base.yaml"), directory)
    assert [(f.path, f.sha256) for f in result.files] == [
        ((directory / "base.d" / "one.sh").resolve(), hashlib.sha256(SCRIPT.encode()).hexdigest())
    ]


def test_editing_the_script_changes_the_plan_hash(tmp_path: Path) -> None:
    """The plan hash covers a run_file script's text: editing it is a plan change."""
    directory = profiles(tmp_path)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "clean.yaml").write_text(PLAYBOOK)

    def current_hash() -> str:
        cat = Catalog.load(
            profiles_dirs=[directory], playbooks_dirs=[tmp_path / "b"], builtin=False
        )
        plan = plan_for(
            cat,
            playbook_name="clean",
            profile_id="base",
            facts=None,
            var_overrides={},
            selection=Selection(),
        )
        return plan_hash(plan)

    before = current_hash()
    (directory / "base.d" / "one.sh").write_text(SCRIPT + "echo more\n")
    assert current_hash() != before


def test_profiles_show_prints_the_scripts_text(tmp_path: Path) -> None:
    """profiles show --format json gives the script read from the file as the step's run."""
    directory = profiles(tmp_path)
    (directory / "child.yaml").write_text(
        "id: child\ndescription: Child\nextends: base\nmatch: {ids: [x]}\n"
    )
    result = CliRunner().invoke(
        main, ["profiles", "show", "child", "--profiles-dir", str(directory), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["phases"]["cleanup"][0]["run"] == SCRIPT


def test_validate_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    """imageprep validate: a run_file leading out is exit 2, the problem's line and a count."""
    directory = profiles(tmp_path, BASE.replace("base.d/one.sh", "../../etc/passwd"))
    result = CliRunner().invoke(main, ["validate", str(directory / "base.yaml")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{directory}/base.yaml:8:7: phases.cleanup[0].run_file: ../../etc/passwd: may not "
        "contain .. (the file must be beside the profile)",
        "imageprep: 1 problem(s) in 1 file(s)",
    ]
