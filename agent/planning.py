"""Read-only commands: plan, validate, profiles list/show, playbooks list.

Each returns the text to print; none changes anything anywhere. ``plan`` with a target
connects only to read facts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.catalog import Catalog, check_files, files_to_validate
from agent.errors import SchemaProblem
from agent.records import BACKUP_PHASE

if TYPE_CHECKING:
    from agent.executors.ssh import SshOptions
    from agent.executors.winrm import WinRmOptions
    from agent.facts import Facts
    from agent.facts_windows import WindowsFacts
    from agent.plan import Plan, Selection


def _catalog(profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]) -> Catalog:
    return Catalog.load(profiles_dirs=profiles_dirs, playbooks_dirs=playbooks_dirs)


def _read_facts(
    target_url: str, ssh_options: SshOptions | None, winrm_options: WinRmOptions | None = None
) -> Facts | WindowsFacts:
    """Linux facts over SSH, Windows facts over WinRM (read-only on both)."""
    # Here, not above: facts load the executors (and structlog), which an offline
    # command never needs.
    from agent.executors import create_executor
    from agent.facts import gather_facts
    from agent.facts_windows import gather_windows_facts
    from agent.targets import parse_target

    target = parse_target(target_url)
    with create_executor(target, ssh_options=ssh_options, winrm_options=winrm_options) as executor:
        if target.is_windows:
            return gather_windows_facts(executor)
        return gather_facts(executor)


def show_plan(
    *,
    target_url: str | None,
    ssh_options: SshOptions | None,
    playbook: str,
    profile: str,
    profiles_dirs: tuple[Path, ...],
    playbooks_dirs: tuple[Path, ...],
    var_overrides: Mapping[str, Any],
    selection: Selection,
    as_json: bool,
    winrm_options: WinRmOptions | None = None,
    var_origins: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
) -> str:
    """The plan as text or JSON; ``catalog``: one already loaded (a fleet's, for each host)."""
    from agent.plan import plan_for  # here: the listing commands need no plan

    if catalog is None:
        catalog = _catalog(profiles_dirs, playbooks_dirs)
    facts = _read_facts(target_url, ssh_options, winrm_options) if target_url else None
    plan = plan_for(
        catalog,
        playbook_name=playbook,
        profile_id=profile,
        facts=facts,
        var_overrides=var_overrides,
        var_origins=var_origins,
        selection=selection,
    )
    if as_json:
        return json.dumps(plan.to_dict(), indent=2, default=str)
    return render_plan(plan)


def render_plan(plan: Plan) -> str:
    lines = [
        f"playbook {plan.playbook_name} ({plan.playbook_file})",
        f"profile  {plan.profile_id} ({plan.profile_file})",
    ]
    if plan.facts is None:
        lines.append("facts    none (no --target): conditions on facts are shown as undecided")
    else:
        os_facts = plan.facts.get("os", {})
        lines.append(f"facts    {os_facts.get('id')} {os_facts.get('version_id')}")
    for phase in plan.phases:
        lines.append("")
        if phase == BACKUP_PHASE:
            paths = " ".join(plan.backup_paths)
            lines.append(f"[backup]  provider given by --backup; archive paths: {paths}")
            continue
        lines.append(f"[{phase}]")
        for step in plan.steps_in(phase):
            flags = []
            if step.spec.destructive:
                flags.append("DESTRUCTIVE")
            if step.spec.expect_disconnect:
                flags.append("ends the connection")
            if step.skip_reason:
                status = f"skip: {step.skip_reason}"
            elif step.condition is None:
                status = f"undecided: when {step.spec.when}"
            elif step.condition is False:
                status = f"skip: when {step.spec.when} is false"
            else:
                status = "run"
            flag_text = f" [{', '.join(flags)}]" if flags else ""
            lines.append(f"  {step.index:>2}. {step.name}{flag_text}  ({status})")
            lines.append(f"      {step.spec.description}")
            if step.spec.no_log:
                lines.append("      $ (no_log: command hidden)")
            else:
                for command_line in step.command.strip().splitlines():
                    lines.append(f"      $ {command_line}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Validation:
    """What ``imageprep validate`` reports."""

    problems: list[SchemaProblem]
    warnings: list[str]  # profiles that tie: `--profile auto` would refuse them as ambiguous
    checked: int  # how many files


def validate_all(
    files: tuple[Path, ...], profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]
) -> Validation:
    """Problems in the given files (or the built-ins and user dirs), warnings, file count."""
    check = check_files(files, profiles_dirs=profiles_dirs, playbooks_dirs=playbooks_dirs)
    checked = len(files_to_validate(files))
    for directory in (*profiles_dirs, *playbooks_dirs):
        checked += len(files_to_validate((directory,)))
    return Validation(check.problems, check.warnings, checked)


def list_profiles(profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]) -> str:
    catalog = _catalog(profiles_dirs, playbooks_dirs)
    lines = []
    for profile in catalog.profiles():
        origin = catalog.profile_origin(profile.id)
        matches = "abstract (used through extends)" if profile.abstract else _match_text(profile)
        lines.append(f"{profile.id:<14} {matches:<44} {origin.file}")
    return "\n".join(lines)


def _match_text(profile: object) -> str:
    match = getattr(profile, "match", None)
    if match is None:
        return ""
    parts = []
    if match.windows is not None:
        parts.append(match.windows.describe())
    if match.ids:
        parts.append("ID=" + ",".join(match.ids))
    if match.id_like:
        parts.append("ID_LIKE=" + ",".join(match.id_like))
    if match.version:
        parts.append(f"VERSION_ID {match.version}")
    return " ".join(parts)


def show_profile(
    profile_id: str, profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]
) -> str:
    catalog = _catalog(profiles_dirs, playbooks_dirs)
    profile = catalog.get_profile(profile_id)
    origin = catalog.profile_origin(profile_id)
    lines = [f"{profile.id}: {profile.description}", f"  file:    {origin.file}"]
    for shadowed in origin.shadowed:
        lines.append(f"  shadows: {shadowed}")
    if len(profile.chain) > 1:
        lines.append(f"  extends: {' -> '.join(str(f) for f in profile.chain[1:])}")
    if not profile.abstract:
        lines.append(f"  matches: {_match_text(profile)}")
    if profile.vars:
        rendered = ", ".join(f"{k}={v!r}" for k, v in profile.vars.items())
        lines.append(f"  vars:    {rendered}")
    lines.append(f"  backup paths: {' '.join(profile.backup_paths)}")
    for phase, steps in profile.phases.items():
        lines.append(f"  [{phase}]")
        for step in steps:
            default = "*" if step.enabled else " "
            marks = " DESTRUCTIVE" if step.destructive else ""
            when = f"  (when {step.when})" if step.when else ""
            lines.append(f"    {default} {phase}/{step.name}{marks}: {step.description}{when}")
    lines.append("  (* = on by default)")
    return "\n".join(lines)


def list_playbooks(profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]) -> str:
    catalog = _catalog(profiles_dirs, playbooks_dirs)
    lines = []
    for name in catalog.playbook_names():
        playbook = catalog.get_playbook(name)
        backup = "needs a backup" if playbook.requires_backup else "no backup needed"
        phases = " -> ".join(playbook.phases)
        lines.append(f"{name:<12} {phases:<60} {backup:<17} {catalog.playbook_file(name)}")
        lines.append(f"{'':<12} {playbook.description}")
    return "\n".join(lines)


# -- the same listings as data, for `--format json` -------------------------------------------


def profiles_data(
    profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]
) -> list[dict[str, Any]]:
    catalog = _catalog(profiles_dirs, playbooks_dirs)
    return [
        {
            "id": profile.id,
            "abstract": profile.abstract,
            "match": profile.match.to_dict() if profile.match else None,
            "file": catalog.profile_origin(profile.id).file,
        }
        for profile in catalog.profiles()
    ]


def profile_data(
    profile_id: str, profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]
) -> dict[str, Any]:
    catalog = _catalog(profiles_dirs, playbooks_dirs)
    profile = catalog.get_profile(profile_id)
    origin = catalog.profile_origin(profile_id)
    return {
        "id": profile.id,
        "description": profile.description,
        "file": origin.file,
        "shadows": list(origin.shadowed),
        "extends": [str(f) for f in profile.chain[1:]],
        "match": profile.match.to_dict() if profile.match else None,
        "vars": profile.vars,
        "backup_paths": profile.backup_paths,
        "phases": {
            phase: [{k: v for k, v in step.to_dict().items() if v is not None} for step in steps]
            for phase, steps in profile.phases.items()
        },
    }


def playbooks_data(
    profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...]
) -> list[dict[str, Any]]:
    catalog = _catalog(profiles_dirs, playbooks_dirs)
    return [
        {
            "name": name,
            "description": catalog.get_playbook(name).description,
            "phases": list(catalog.get_playbook(name).phases),
            "requires_backup": catalog.get_playbook(name).requires_backup,
            "file": catalog.playbook_file(name),
        }
        for name in catalog.playbook_names()
    ]


def validation_data(result: Validation) -> dict[str, Any]:
    return {
        "checked": result.checked,
        "valid": not result.problems,
        "problems": [
            {
                "file": p.file,
                "line": p.line,
                "column": p.column,
                "field": p.field,
                "message": p.message,
            }
            for p in result.problems
        ],
        "warnings": list(result.warnings),
    }
