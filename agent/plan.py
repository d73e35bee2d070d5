"""Plan: profile + playbook + facts + vars resolved into concrete, ordered steps.

Pure: no I/O. The whole plan is built and validated before anything runs, so a typo in a
template or a `when:` fails the run before the target is touched. `imageprep plan`
prints exactly what `imageprep run` executes.

Without facts (``plan --profile ID`` and no target) conditions and templates that need
facts stay undecided and are shown as such; everything else is checked all the same.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent import expressions
from agent.errors import UsageError, ValidationError
from agent.records import BACKUP_PHASE, Step

if TYPE_CHECKING:  # plan_for's callers load these; building a plan needs neither
    from agent.catalog import Catalog
    from agent.facts import Facts
    from agent.facts_windows import WindowsFacts


@dataclass(frozen=True)
class Selection:
    """virt-sysprep-like step selection: ``--only``, ``--skip``, ``--tags``."""

    only: frozenset[str] = frozenset()
    skip: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    def reason_to_skip(self, phase: str, step: Step) -> str | None:
        names = {step.name, f"{phase}/{step.name}"}
        if names & self.skip:
            return "deselected with --skip"
        if self.only:
            return None if names & self.only else "not named by --only"
        if self.tags:
            return None if self.tags & set(step.tags) else "no tag matches --tags"
        if not step.enabled:
            return "off by default"
        return None


#: The step fields a plan's JSON shows after its command (``run`` rendered).
_SHOWN_FIELDS = (
    "become",
    "timeout",
    "retries",
    "retry_delay",
    "ok_exit_codes",
    "on_failure",
    "destructive",
    "expect_disconnect",
    "no_log",
    "tags",
    "when",
)


@dataclass(frozen=True)
class PlannedStep:
    """A step of the profile (``spec``) with what planning added: its place, its
    rendered command and resume check, and whether it runs."""

    index: int
    phase: str
    spec: Step
    command: str
    # True/False once decided; None when it needs facts that a target-less plan lacks.
    condition: bool | None
    skip_reason: str | None
    # Destructive steps only: a command whose exit 0 means the step's effect is in place.
    resume_check: str | None = None

    @property
    def name(self) -> str:
        """The step's name (with ``phase``, what identifies it in a plan)."""
        return self.spec.name

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.spec.name}"

    @property
    def will_run(self) -> bool:
        return self.skip_reason is None and self.condition is not False

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec.to_dict()
        hidden = self.spec.no_log
        data: dict[str, Any] = {
            "index": self.index,
            "phase": self.phase,
            "name": spec["name"],
            "description": spec["description"],
            "command": "(no_log: hidden)" if hidden else self.command,
        }
        data |= {k: spec[k] for k in _SHOWN_FIELDS}
        data["condition"] = self.condition
        data["skip_reason"] = self.skip_reason
        data["resume_check"] = self.resume_check
        if hidden and self.resume_check is not None:
            data["resume_check"] = "(no_log: hidden)"
        return data


@dataclass(frozen=True)
class Plan:
    profile_id: str
    profile_file: str
    playbook_name: str
    playbook_file: str
    requires_backup: bool
    phases: tuple[str, ...]
    steps: tuple[PlannedStep, ...]
    vars: Mapping[str, Any]
    backup_paths: tuple[str, ...]
    facts: Mapping[str, Any] | None = field(default=None)

    def steps_in(self, phase: str) -> tuple[PlannedStep, ...]:
        return tuple(s for s in self.steps if s.phase == phase)

    @property
    def has_destructive_steps(self) -> bool:
        return any(s.spec.destructive and s.will_run for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": {"id": self.profile_id, "file": self.profile_file},
            "playbook": {"name": self.playbook_name, "file": self.playbook_file},
            "requires_backup": self.requires_backup,
            "phases": list(self.phases),
            "vars": dict(self.vars),
            "backup_paths": list(self.backup_paths),
            "steps": [s.to_dict() for s in self.steps],
        }


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_INTEGER = re.compile(r"\s*[+-]?\d{1,18}\s*")
_EXPECTED = {
    bool: "true or false",
    int: "an integer",
    list: "a list of strings (comma- or space-separated on the command line)",
    str: "a string",
}
_SHOWN_CHARS = 60


class _Bad:
    """Marks a value that does not fit the var's type."""


def _kind(default: Any) -> type:
    # bool before int: True is an int to Python, but never a number to a profile.
    for kind in (bool, int, list):
        if isinstance(default, kind):
            return kind
    return str


def _from_text(text: str, kind: type) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        return lowered in _TRUE if lowered in _TRUE | _FALSE else _Bad
    if kind is int:
        return int(text) if _INTEGER.fullmatch(text) else _Bad
    if kind is list:
        return [item for item in text.replace(",", " ").split() if item]
    return text


def _fits(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, kind)


def _shown(value: Any) -> str:
    """A bounded excerpt of a rejected value: an error line never grows with its input."""
    if isinstance(value, bool) or (isinstance(value, int) and abs(value) < 10**18):
        return repr(value)
    if isinstance(value, int):
        return "a very large integer"
    if isinstance(value, str):
        more = "..." if len(value) > _SHOWN_CHARS else ""
        return repr(value[:_SHOWN_CHARS]) + more
    return f"a {type(value).__name__}"


def coerce_var(key: str, value: Any, default: Any, origin: str | None = None) -> Any:
    """A var override converted to, or checked against, the type of the profile's default.

    A string (``--var KEY=VALUE``, or a string in a var file) is read as the default's
    type: ``true``/``false`` (also yes/no, on/off, 1/0), an integer, a list split on
    commas and spaces, or the text itself. Any other value (from a var file or a
    journal) must already have that type. ``origin`` is ``FILE:LINE`` for a var file;
    None for the command line.
    """
    kind = _kind(default)
    converted = _from_text(value, kind) if isinstance(value, str) else value
    if converted is _Bad or not _fits(converted, kind):
        where = f"{origin}: var {key}" if origin else f"--var {key}"
        raise ValidationError(f"{where}: expected {_EXPECTED[kind]}, got {_shown(value)}")
    return converted


def _needs_facts(text: str) -> bool:
    return "facts" in text


def _decide(
    step: Step, phase: str, facts: Mapping[str, Any] | None, variables: Mapping[str, Any]
) -> bool | None:
    if step.when is None:
        return True
    if facts is None and _needs_facts(step.when):
        return None
    try:
        return expressions.evaluate(step.when, facts or {}, variables)
    except ValidationError as exc:
        raise ValidationError(f"step {phase}/{step.name}: when: {exc}") from exc


def quote_powershell(text: str) -> str:
    """A PowerShell single-quoted literal: nothing inside expands; ``'`` is doubled.

    PowerShell also closes a single-quoted string at the typographic quotes U+2018/U+2019
    and U+201A/U+201B, so those are doubled too.
    """
    return "'" + re.sub("(['\u2018\u2019\u201a\u201b])", r"\1\1", text) + "'"


#: How a rendered value becomes one word of the step's language, and how list items join.
_QUOTING: dict[str, tuple[Callable[[str], str], str]] = {
    "sh": (shlex.quote, " "),
    "powershell": (quote_powershell, ", "),
}


_FACTS_PLACEHOLDER = re.compile(r"\{\{\s*facts\.[^}]*\}\}")


def _render(
    step: Step,
    phase: str,
    facts: Mapping[str, Any] | None,
    variables: Mapping[str, Any],
    shell: str = "sh",
    *,
    field: str = "run",
) -> str:
    text = step.run if field == "run" else (step.resume_check or "")
    quote, separator = _QUOTING[shell]

    def render(part: str) -> str:
        # Values become single shell words: a var given on the command line can never
        # change the shape of the command it lands in.
        return expressions.render(part, facts or {}, variables, quote=quote, separator=separator)

    try:
        if facts is None:
            # No target: fill in the vars, keep each facts placeholder as it is written.
            pieces = _FACTS_PLACEHOLDER.split(text)
            found = _FACTS_PLACEHOLDER.findall(text)
            return "".join(
                render(piece) + (found[i] if i < len(found) else "")
                for i, piece in enumerate(pieces)
            )
        return render(text)
    except ValidationError as exc:
        raise ValidationError(f"step {phase}/{step.name}: {field}: {exc}") from exc


def build_plan(
    *,
    profile_id: str,
    profile_file: str,
    profile_phases: Mapping[str, Sequence[Step]],
    profile_vars: Mapping[str, Any],
    backup_paths: Sequence[str],
    playbook_name: str,
    playbook_file: str,
    playbook_phases: Sequence[str],
    requires_backup: bool,
    facts: Mapping[str, Any] | None,
    var_overrides: Mapping[str, Any] | None = None,
    selection: Selection | None = None,
    shell: str = "sh",
    var_origins: Mapping[str, str] | None = None,
) -> Plan:
    """Resolve a profile and a playbook into a validated plan; raise ValidationError.

    ``shell`` is the language of the steps: ``sh`` (Linux) or ``powershell`` (Windows);
    it decides how template values are quoted. Each override is typed by its default
    (:func:`coerce_var`); ``var_origins`` names the ``FILE:LINE`` of those that came
    from a var file, for the error message.
    """
    if shell not in _QUOTING:
        raise ValidationError(f"unknown step language {shell!r} (known: {', '.join(_QUOTING)})")
    selection = selection or Selection()
    variables = _resolve_vars(profile_id, profile_vars, var_overrides or {}, var_origins or {})
    if requires_backup and BACKUP_PHASE not in playbook_phases:
        raise ValidationError(
            f"playbook {playbook_name} ({playbook_file}): requires_backup is true "
            f"but its phases do not include '{BACKUP_PHASE}'"
        )
    _check_selection_names(selection, profile_phases, playbook_phases)
    steps: list[PlannedStep] = []
    for phase in playbook_phases:
        if phase == BACKUP_PHASE:
            continue
        rendering = _Rendering(phase, facts, variables, shell)
        for spec in profile_phases.get(phase, ()):
            steps.append(rendering.step(len(steps) + 1, spec, selection))
    plan = Plan(
        profile_id=profile_id,
        profile_file=profile_file,
        playbook_name=playbook_name,
        playbook_file=playbook_file,
        requires_backup=requires_backup,
        phases=tuple(playbook_phases),
        steps=tuple(steps),
        vars=variables,
        backup_paths=tuple(backup_paths),
        facts=facts,
    )
    _check_destructive_after_backup(plan)
    return plan


def _resolve_vars(
    profile_id: str,
    profile_vars: Mapping[str, Any],
    overrides: Mapping[str, Any],
    origins: Mapping[str, str],
) -> dict[str, Any]:
    """The profile's vars with the overrides applied, each typed by its default."""
    variables: dict[str, Any] = dict(profile_vars)
    for key, value in overrides.items():
        if key not in variables:
            known = ", ".join(sorted(variables)) or "none"
            where = f"{origins[key]}: var {key}" if key in origins else f"--var {key}"
            raise ValidationError(f"{where}: profile {profile_id} has no such var (known: {known})")
        variables[key] = coerce_var(key, value, variables[key], origins.get(key))
    return variables


@dataclass(frozen=True)
class _Rendering:
    """What rendering a step of one phase needs: the facts (None: no target), the vars
    and the step language."""

    phase: str
    facts: Mapping[str, Any] | None
    variables: Mapping[str, Any]
    shell: str

    def step(self, index: int, spec: Step, selection: Selection) -> PlannedStep:
        """``spec`` rendered, decided and selected: the plan's step number ``index``."""
        phase, facts, variables, shell = self.phase, self.facts, self.variables, self.shell
        check = spec.resume_check
        return PlannedStep(
            index=index,
            phase=phase,
            spec=spec,
            command=_render(spec, phase, facts, variables, shell),
            condition=_decide(spec, phase, facts, variables),
            skip_reason=selection.reason_to_skip(phase, spec),
            resume_check=(
                None
                if check is None
                else _render(spec, phase, facts, variables, shell, field="resume_check")
            ),
        )


def _check_selection_names(
    selection: Selection,
    profile_phases: Mapping[str, Sequence[Step]],
    playbook_phases: Sequence[str],
) -> None:
    known: set[str] = set()
    for phase in playbook_phases:
        for spec in profile_phases.get(phase, ()):
            aliases = {spec.name, f"{phase}/{spec.name}"}
            known |= aliases
            if aliases & selection.only and aliases & selection.skip:
                # --skip would win without a word; the user asked for two opposite things.
                raise ValidationError(f"--only and --skip both name step {phase}/{spec.name}")
    for option, names in (("--only", selection.only), ("--skip", selection.skip)):
        unknown = sorted(names - known)
        if unknown:
            raise ValidationError(f"{option}: no step named {', '.join(unknown)} in this plan")


def _check_destructive_after_backup(plan: Plan) -> None:
    """A destructive step placed before the backup phase could never be gated by it."""
    if BACKUP_PHASE not in plan.phases:
        return
    backup_at = plan.phases.index(BACKUP_PHASE)
    for step in plan.steps:
        if step.spec.destructive and plan.phases.index(step.phase) < backup_at:
            raise ValidationError(
                f"playbook {plan.playbook_name}: destructive step {step.key} runs before "
                f"the '{BACKUP_PHASE}' phase"
            )


def plan_for(
    catalog: Catalog,
    *,
    playbook_name: str,
    profile_id: str,
    facts: Facts | WindowsFacts | Mapping[str, Any] | None,
    var_overrides: Mapping[str, Any],
    selection: Selection,
    var_origins: Mapping[str, str] | None = None,
) -> Plan:
    """Resolve the playbook and profile and build the validated plan.

    ``facts`` may be the recorded ``as_dict()`` form (a resumed run rebuilds its plan from
    the facts it was first built from); then ``profile_id`` must be explicit.
    """
    playbook = catalog.get_playbook(playbook_name)
    if profile_id == "auto":
        if facts is None or isinstance(facts, Mapping):
            raise UsageError("--profile auto needs --target (or name a profile with --profile ID)")
        profile = catalog.match_profile(facts.os_release)
    else:
        profile = catalog.get_profile(profile_id)
    return build_plan(
        profile_id=profile.id,
        profile_file=str(profile.source_file),
        profile_phases=profile.phases,
        profile_vars=profile.vars,
        backup_paths=profile.backup_paths,
        playbook_name=playbook.name,
        playbook_file=str(catalog.playbook_file(playbook.name)),
        playbook_phases=playbook.phases,
        requires_backup=playbook.requires_backup,
        facts=(dict(facts) if isinstance(facts, Mapping) else facts.as_dict()) if facts else None,
        var_overrides=var_overrides,
        var_origins=var_origins,
        selection=selection,
        shell="powershell" if profile.platform == "windows" else "sh",
    )
