"""shellcheck over every Linux step script of the built-in profiles, as the target gets it.

Steps run under bash (a subshell of the root bash, ``/bin/bash -s`` over exec:
agent/executors/ssh/rootshell.py and exec.py), so shellcheck checks the bash dialect.
Each script is checked as rendered by the plan (vars inserted as quoted shell words);
a ``{{ facts.X }}`` placeholder, only known on a target, becomes one quoted word.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent import facts
from agent.catalog import Catalog, builtin_dir
from agent.plan import build_plan

_FACT = re.compile(r"\{\{\s*facts\.[^}]*\}\}")


@dataclass(frozen=True)
class _Script:
    where: str  # profile/phase/step[:resume_check]
    text: str


def _linux_scripts() -> Iterator[_Script]:
    """Every Linux step's rendered command and resume_check, abstract profiles included."""
    for profile in Catalog.load().profiles():
        if profile.platform != "linux":
            continue
        plan = build_plan(
            profile_id=profile.id,
            profile_file=profile.source_file,
            profile_phases=profile.phases,
            profile_vars=profile.vars,
            backup_paths=profile.backup_paths,
            playbook_name="every-phase",
            playbook_file="(test)",
            playbook_phases=list(profile.phases),
            requires_backup=False,
            facts=None,
        )
        for step in plan.steps:
            where = f"{profile.id}/{step.phase}/{step.name}"
            yield _Script(where, step.command)
            if step.resume_check is not None:
                yield _Script(f"{where}:resume_check", step.resume_check)


def _shellcheck() -> str:
    found = shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck is not installed: run tests/setup.sh (apt-get install shellcheck)")
    return found


def test_every_linux_step_script_passes_shellcheck(tmp_path: Path) -> None:
    """shellcheck -s bash finds nothing in any Linux step script (inline or run_file)."""
    files: dict[str, list[str]] = {}
    by_text: dict[str, Path] = {}
    for script in _linux_scripts():
        if script.text not in by_text:
            path = tmp_path / f"{len(by_text):04d}.sh"
            path.write_text(_FACT.sub("'fact'", script.text))
            by_text[script.text] = path
        files.setdefault(by_text[script.text].name, []).append(script.where)
    assert len(by_text) > 100  # the built-in profiles have far more; none were lost
    result = subprocess.run(
        [_shellcheck(), "--shell=bash", "--format=gcc", *sorted(map(str, by_text.values()))],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = [
        f"{', '.join(files[Path(line.split(':', 1)[0]).name])}: {line.split(':', 1)[1]}"
        for line in result.stdout.splitlines()
    ]
    assert not findings, "\n".join(findings)
    assert result.returncode == 0, result.stderr


def test_shellcheck_finds_a_planted_mistake(tmp_path: Path) -> None:
    """The check above can fail: an unquoted expansion shellcheck warns about is reported."""
    path = tmp_path / "bad.sh"
    path.write_text("for f in $(ls /tmp); do rm $f; done\n")
    result = subprocess.run(
        [_shellcheck(), "--shell=bash", "--format=gcc", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "SC2086" in result.stdout


def test_every_script_file_is_used_by_a_step() -> None:
    """No .sh or .ps1 file beside the built-in profiles is left over from a removed step."""
    profiles = builtin_dir("profile")
    used = {
        (profiles / line.split("run_file:", 1)[1].strip()).resolve()
        for yaml_file in profiles.glob("*.yaml")
        for line in yaml_file.read_text().splitlines()
        if line.strip().startswith("run_file:")
    }
    on_disk = {p.resolve() for ext in ("sh", "ps1") for p in profiles.rglob(f"*.{ext}")}
    assert len(on_disk) > 60  # the scripts moved out of the built-in profiles
    assert on_disk - used == set()


@pytest.mark.parametrize("name", ["_GATHER_SCRIPT", "_OVF_USER_SCRIPT"])
def test_the_facts_scripts_pass_shellcheck(tmp_path: Path, name: str) -> None:
    """shellcheck -s bash finds nothing in the scripts that read a Linux target's facts."""
    path = tmp_path / "facts.sh"
    path.write_text(getattr(facts, name))
    result = subprocess.run(
        [_shellcheck(), "--shell=bash", "--format=gcc", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "")
