"""The data model of distro profiles and playbooks (pydantic v2, strict and frozen).

A *profile* (``distro_profiles/*.yaml``) names its phases, each a list of step entries. In
a profile that ``extends`` another, an entry is one of:

* a full :class:`NewStep` (a :class:`Step` plus optional ``before:``/``after:`` NAME),
* a :class:`StepOverride` ``{name, override: true, <some step fields>}``,
* a :class:`StepDrop` ``{name, drop: true}``.

A *playbook* (``playbooks/*.yaml``) says which phases run, in which order. After
``extends`` is resolved (``agent.catalog``), a profile becomes a :class:`ResolvedProfile`
whose phases hold plain :class:`Step` records only.

Models validate themselves wherever they are built (YAML, merges, tests): a destructive
step can never carry retries, a ``when`` always parses, templates are dotted paths.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agent import expressions
from agent.errors import ValidationError
from agent.excerpt import excerpt

__all__ = [
    "BACKUP_PHASE",
    "Match",
    "NewStep",
    "Playbook",
    "Profile",
    "ResolvedProfile",
    "Step",
    "StepDrop",
    "StepEntry",
    "StepOverride",
    "VarValue",
    "VersionRange",
    "WindowsMatch",
    "parse_version_range",
    "profile_structure_problems",
]

Loc = tuple[str | int, ...]

#: The phase the backup provider runs; profiles may not put steps in it.
BACKUP_PHASE = "backup"

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
VAR_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_SLUG_TEXT = "a slug (lowercase letters, digits and '-', not starting with '-')"


def _rule(message: str, *at: str | int) -> PydanticCustomError:
    """A cross-field rule violation; ``at`` is where below the model it points."""
    return PydanticCustomError("rule", "{message}", {"message": message, "at": at})


def _one_line(value: str) -> str:
    # virt-sysprep's rule for operation headings: one line, no trailing period.
    if not value.strip() or "\n" in value.strip() or value.rstrip().endswith("."):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ValueError(
            f"expected a one-line description without a trailing period, got {shown!r}"
        )
    return value.strip()


def _when(value: str) -> str:
    try:
        expressions.check_expression(value)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    return value


def _script(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a shell script, got an empty string")
    try:
        expressions.check_template(value)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    return value


def _abs_path(value: str) -> str:
    if not value.startswith("/") or "\n" in value or "\0" in value:
        raise ValueError(f"expected an absolute path, got {excerpt(value)}")
    if any(part == ".." for part in value.split("/")):
        raise ValueError(f"expected a path without '..', got {excerpt(value)}")
    return value


def _var_value(value: Any) -> Any:
    # One message instead of pydantic's four (one per member of the union).
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    # excerpt, not repr: a billion-laughs list would take gigabytes to print.
    shown = "a mapping" if isinstance(value, dict) else excerpt(value)
    raise ValueError(f"expected a string, an integer, a boolean or a list of strings, got {shown}")


Slug = Annotated[str, Field(pattern=SLUG_RE.pattern)]
Description = Annotated[str, AfterValidator(_one_line)]
WhenExpr = Annotated[str, AfterValidator(_when)]
Script = Annotated[str, AfterValidator(_script)]
AbsPath = Annotated[str, AfterValidator(_abs_path)]
VarValue = Annotated[str | int | bool | list[str], PlainValidator(_var_value)]
ExitCode = Annotated[int, Field(ge=0, le=255)]
OnFailure = Literal["abort", "continue", "ignore"]
Platform = Literal["linux", "windows"]

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


def _x(expected: str, item: str | None = None, key: str | None = None) -> dict[str, Any]:
    """``json_schema_extra`` wording for error messages (see agent.yamlload)."""
    out: dict[str, Any] = {"expected": expected}
    if item:
        out["item"] = item
    if key:
        out["key"] = key
    return out


# ------------------------------------------------------------------------------- versions


_CLAUSE_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)\s*$")


@dataclass(frozen=True)
class VersionRange:
    """A VERSION_ID range like ``">=20.04,<25"``: every clause must hold."""

    text: str
    clauses: tuple[tuple[str, expressions.Version], ...]

    def contains(self, version_id: str | None) -> bool:
        """Whether ``version_id`` satisfies every clause; a missing or odd one never does."""
        if not version_id:
            return False
        try:
            have = expressions.parse_version(version_id)
        except ValueError:
            return False
        return all(_OPS[op](have, want) for op, want in self.clauses)

    def __str__(self) -> str:
        return self.text


_OPS: dict[str, Callable[[expressions.Version, expressions.Version], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


def parse_version_range(text: str) -> VersionRange:
    """Parse ``">=20.04,<25"``; raise ValueError on anything else."""
    clauses = []
    for raw in text.split(","):
        m = _CLAUSE_RE.match(raw)
        if m is None:
            raise ValueError(
                f'expected a version range like ">=20.04,<25" '
                f"(operators >= <= > < == !=, numeric dotted versions), got {excerpt(text)}"
            )
        clauses.append((m.group(1), expressions.parse_version(m.group(2))))
    return VersionRange(text.strip(), tuple(clauses))


# ---------------------------------------------------------------------------------- steps


_RUN_FILE_TEXT = "a file beside the profile holding the script (a relative path)"


class Step(BaseModel):
    """One self-describing command: what it does, how to run it, what failure means."""

    model_config = _STRICT

    name: Slug = Field(json_schema_extra=_x(_SLUG_TEXT))
    description: Description = Field(json_schema_extra=_x("a one-line description"))
    run: Script = Field(json_schema_extra=_x("a shell script (a string)"))
    become: bool = Field(default=True, json_schema_extra=_x("true or false"))
    when: WhenExpr | None = Field(default=None, json_schema_extra=_x("an expression (a string)"))
    timeout: int = Field(default=600, gt=0, json_schema_extra=_x("an integer > 0 (seconds)"))
    retries: int = Field(default=0, ge=0, json_schema_extra=_x("an integer >= 0"))
    retry_delay: float = Field(default=5.0, ge=0, json_schema_extra=_x("a number >= 0 (seconds)"))
    ok_exit_codes: list[ExitCode] = Field(
        default_factory=lambda: [0],
        min_length=1,
        json_schema_extra=_x("a non-empty list of exit codes", item="an integer 0-255"),
    )
    on_failure: OnFailure = Field(
        default="abort", json_schema_extra=_x("one of abort, continue, ignore")
    )
    destructive: bool = Field(default=False, json_schema_extra=_x("true or false"))
    # Exit 0 means "this destructive step's effect is in place". `run --resume` runs it
    # instead of the step when an interrupted run started the step but never saw it end.
    resume_check: Script | None = Field(
        default=None, json_schema_extra=_x("a shell script (a string)")
    )
    expect_disconnect: bool = Field(default=False, json_schema_extra=_x("true or false"))
    no_log: bool = Field(default=False, json_schema_extra=_x("true or false"))
    tags: list[Slug] = Field(
        default_factory=list, json_schema_extra=_x("a list of slugs", item=_SLUG_TEXT)
    )
    enabled: bool = Field(default=True, json_schema_extra=_x("true or false"))

    @model_validator(mode="after")
    def _destructive_is_final(self) -> Step:
        # The point of no return runs exactly once and stops the run if it fails.
        if self.destructive and self.retries > 0:
            raise _rule("a destructive step may not be retried (retries must be 0)", "retries")
        if self.destructive and self.on_failure != "abort":
            raise _rule("a destructive step must have on_failure: abort", "on_failure")
        if self.resume_check is not None and not self.destructive:
            # Other steps are simply run again by `run --resume` (they are idempotent).
            raise _rule("resume_check is only for destructive steps", "resume_check")
        return self


def _run_or_run_file(schema: dict[str, Any]) -> None:
    # The loader reads run_file into run (agent.scriptfiles); editors see the file's form.
    schema["required"] = [k for k in schema.get("required", []) if k != "run"]
    schema["oneOf"] = [{"required": ["run"]}, {"required": ["run_file"]}]


class NewStep(Step):
    """A full step in a profile; ``before``/``after`` place it among the base's steps."""

    model_config = ConfigDict(**_STRICT, json_schema_extra=_run_or_run_file)

    run_file: str | None = Field(default=None, json_schema_extra=_x(_RUN_FILE_TEXT))
    before: Slug | None = Field(default=None, json_schema_extra=_x("a step name"))
    after: Slug | None = Field(default=None, json_schema_extra=_x("a step name"))

    @model_validator(mode="after")
    def _one_anchor(self) -> NewStep:
        if self.before is not None and self.after is not None:
            raise _rule("give before or after, not both", "after")
        return self

    def to_step(self) -> Step:
        return Step.model_validate(self.model_dump(exclude={"before", "after", "run_file"}))


class StepOverride(BaseModel):
    """``{name, override: true, ...}``: these fields replace the base step's."""

    model_config = _STRICT

    name: Slug = Field(json_schema_extra=_x(_SLUG_TEXT))
    override: Literal[True] = Field(json_schema_extra=_x("true"))
    description: Description | None = Field(
        default=None, json_schema_extra=_x("a one-line description")
    )
    run: Script | None = Field(default=None, json_schema_extra=_x("a shell script (a string)"))
    run_file: str | None = Field(default=None, json_schema_extra=_x(_RUN_FILE_TEXT))
    become: bool | None = Field(default=None, json_schema_extra=_x("true or false"))
    when: WhenExpr | None = Field(default=None, json_schema_extra=_x("an expression (a string)"))
    timeout: int | None = Field(
        default=None, gt=0, json_schema_extra=_x("an integer > 0 (seconds)")
    )
    retries: int | None = Field(default=None, ge=0, json_schema_extra=_x("an integer >= 0"))
    retry_delay: float | None = Field(
        default=None, ge=0, json_schema_extra=_x("a number >= 0 (seconds)")
    )
    ok_exit_codes: list[ExitCode] | None = Field(
        default=None,
        min_length=1,
        json_schema_extra=_x("a non-empty list of exit codes", item="an integer 0-255"),
    )
    on_failure: OnFailure | None = Field(
        default=None, json_schema_extra=_x("one of abort, continue, ignore")
    )
    destructive: bool | None = Field(default=None, json_schema_extra=_x("true or false"))
    resume_check: Script | None = Field(
        default=None, json_schema_extra=_x("a shell script (a string)")
    )
    expect_disconnect: bool | None = Field(default=None, json_schema_extra=_x("true or false"))
    no_log: bool | None = Field(default=None, json_schema_extra=_x("true or false"))
    tags: list[Slug] | None = Field(
        default=None, json_schema_extra=_x("a list of slugs", item=_SLUG_TEXT)
    )
    enabled: bool | None = Field(default=None, json_schema_extra=_x("true or false"))

    def changes(self) -> dict[str, Any]:
        """The step fields this override sets (``when: null`` is not expressible: omit it)."""
        return {
            k: getattr(self, k)
            for k in self.model_fields_set
            if k not in ("name", "override", "run_file") and getattr(self, k) is not None
        }


class StepDrop(BaseModel):
    """``{name, drop: true}``: remove the base profile's step of that name."""

    model_config = _STRICT

    name: Slug = Field(json_schema_extra=_x(_SLUG_TEXT))
    drop: Literal[True] = Field(json_schema_extra=_x("true"))


def _entry_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "override" in value:
            return "@override"
        if "drop" in value:
            return "@drop"
        return "@step"
    if isinstance(value, StepOverride):
        return "@override"
    if isinstance(value, StepDrop):
        return "@drop"
    return "@step"


StepEntry = Annotated[
    Annotated[NewStep, Tag("@step")]
    | Annotated[StepOverride, Tag("@override")]
    | Annotated[StepDrop, Tag("@drop")],
    Discriminator(_entry_kind),
]


# -------------------------------------------------------------------------------- profiles


class WindowsMatch(BaseModel):
    """Which Windows targets a profile is for, by what Windows reports in every language.

    ``product_type`` is the registry's ProductOptions ProductType (``ServerNT`` and
    ``LanmanNT``, a domain controller, are ``server``; ``WinNT`` is ``client``); ``build``
    is a range over CurrentBuildNumber (``">=14393,<26200"``); ``edition_id`` and
    ``installation_type`` (``Server``, ``Server Core``), when given, list the accepted
    values, compared without regard to case. The product caption is never matched: it
    is localized ("Майкрософт Windows Server 2019 Standard").
    """

    model_config = _STRICT

    product_type: Literal["server", "client"] = Field(
        json_schema_extra=_x("server or client (ProductOptions ProductType)")
    )
    build: str | None = Field(
        default=None, json_schema_extra=_x('a build range string like ">=14393"')
    )
    edition_id: list[str] = Field(
        default_factory=list,
        json_schema_extra=_x("a list of EditionID values", item="a string"),
    )
    installation_type: list[str] = Field(
        default_factory=list,
        json_schema_extra=_x("a list of InstallationType values", item="a string"),
    )

    @field_validator("build")
    @classmethod
    def _build_syntax(cls, value: str | None) -> str | None:
        if value is not None:
            parse_version_range(value)
        return value

    @property
    def build_range(self) -> VersionRange | None:
        return parse_version_range(self.build) if self.build else None

    def mismatch(
        self, *, product_type: str, build: str, edition_id: str, installation_type: str
    ) -> str | None:
        """Why a target does not match (None when it does)."""
        if product_type != self.product_type:
            return f"ProductType {product_type or '(none)'} is not {self.product_type}"
        rng = self.build_range
        if rng is not None and not rng.contains(build):
            return f"build {build or '(none)'} is outside {rng}"
        if self.edition_id and edition_id.casefold() not in {e.casefold() for e in self.edition_id}:
            return f"EditionID {edition_id or '(none)'} is not one of {', '.join(self.edition_id)}"
        if self.installation_type and installation_type.casefold() not in {
            t.casefold() for t in self.installation_type
        }:
            return (
                f"InstallationType {installation_type or '(none)'} is not one of "
                f"{', '.join(self.installation_type)}"
            )
        return None

    def describe(self) -> str:
        parts = [f"ProductType {self.product_type}"]
        if self.build:
            parts.append(f"build {self.build}")
        if self.edition_id:
            parts.append("EditionID " + "/".join(self.edition_id))
        if self.installation_type:
            parts.append("InstallationType " + "/".join(self.installation_type))
        return ", ".join(parts)


class Match(BaseModel):
    """Which targets a profile is for: os-release ``ID``/``ID_LIKE`` and ``VERSION_ID``,
    or (``windows:``) a Windows ProductType, build, EditionID and InstallationType. A
    profile is for one or the other: its steps are POSIX shell or PowerShell.
    """

    model_config = _STRICT

    ids: list[str] = Field(
        default_factory=list,
        json_schema_extra=_x("a list of os-release ID values", item="a string"),
    )
    id_like: list[str] = Field(
        default_factory=list,
        json_schema_extra=_x("a list of os-release ID_LIKE values", item="a string"),
    )
    version: str | None = Field(
        default=None, json_schema_extra=_x('a version range string like ">=20.04,<25"')
    )

    windows: WindowsMatch | None = Field(
        default=None,
        json_schema_extra=_x(
            "a mapping with product_type (and build, edition_id, installation_type)"
        ),
    )

    @field_validator("version")
    @classmethod
    def _version_syntax(cls, value: str | None) -> str | None:
        if value is not None:
            parse_version_range(value)
        return value

    @model_validator(mode="after")
    def _something_to_match(self) -> Match:
        if self.windows is not None:
            linux = [k for k in ("ids", "id_like", "version") if k in self.model_fields_set]
            if linux:
                raise _rule(
                    f"match.windows cannot be combined with {linux[0]}: a profile runs "
                    "PowerShell on Windows or shell on Linux, not both",
                    linux[0],
                )
            return self
        if not self.ids and not self.id_like:
            raise _rule("match needs ids, id_like or windows (a profile without match is abstract)")
        return self

    @property
    def version_range(self) -> VersionRange | None:
        return parse_version_range(self.version) if self.version else None


class Profile(BaseModel):
    """A distro profile exactly as written in one YAML file (before ``extends``)."""

    model_config = _STRICT

    id: Slug = Field(json_schema_extra=_x(_SLUG_TEXT))
    description: Description = Field(json_schema_extra=_x("a one-line description"))
    match: Match | None = None
    extends: Slug | None = Field(default=None, json_schema_extra=_x("a profile id"))
    vars: dict[str, VarValue] = Field(
        default_factory=dict,
        json_schema_extra=_x(
            "a mapping of var names to values",
            item="a string, an integer, a boolean or a list of strings",
            key="a var name (lowercase letters, digits and _)",
        ),
    )
    backup_paths: list[AbsPath] = Field(
        default_factory=list,
        json_schema_extra=_x("a list of absolute paths", item="an absolute path"),
    )
    phases: dict[Slug, list[StepEntry]] = Field(
        default_factory=dict,
        json_schema_extra=_x(
            "a mapping of phase names to lists of steps",
            item="a list of steps",
            key=f"a phase name: {_SLUG_TEXT}",
        ),
    )

    @model_validator(mode="after")
    def _structure(self) -> Profile:
        plain = {
            "vars": self.vars,
            "extends": self.extends,
            "phases": {
                phase: [e.model_dump(exclude_unset=True) for e in entries]
                for phase, entries in self.phases.items()
            },
        }
        problems = profile_structure_problems(plain)
        if problems:
            loc, message = problems[0]
            raise _rule(message, *loc)
        return self


def profile_structure_problems(data: Any) -> list[tuple[Loc, str]]:
    """Rules across a profile's fields, checked on plain data (``"[key]"`` = at the key).

    Run on the raw YAML too, so these are reported together with field errors (pydantic
    runs a model validator only once every field is valid).
    """
    if not isinstance(data, dict):
        return []
    out: list[tuple[Loc, str]] = []
    variables = data.get("vars")
    if isinstance(variables, dict):
        for name in variables:
            if not (isinstance(name, str) and VAR_NAME_RE.match(name)):
                out.append(
                    (
                        ("vars", str(name), "[key]"),
                        f'var name "{name}" must be lowercase letters, digits and _ '
                        "(it is used as vars.NAME)",
                    )
                )
    phases = data.get("phases")
    if not isinstance(phases, dict):
        return out
    if BACKUP_PHASE in phases:
        out.append(
            (
                ("phases", BACKUP_PHASE, "[key]"),
                f'the "{BACKUP_PHASE}" phase belongs to the backup provider; '
                "profiles may not define steps in it",
            )
        )
    for phase, entries in phases.items():
        if not isinstance(entries, list):
            continue
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            name = entry.get("name")
            if isinstance(name, str):
                if name in seen:
                    out.append(
                        (
                            ("phases", phase, i, "name"),
                            f'duplicate step name "{name}" in phase {phase} '
                            f"(first at phases.{phase}[{seen[name]}])",
                        )
                    )
                else:
                    seen[name] = i
            extension = [k for k in ("override", "drop", "before", "after") if k in entry]
            if data.get("extends") is None and extension:
                out.append(
                    (
                        ("phases", phase, i, extension[0]),
                        f"{extension[0]}: only a profile that extends another may override, drop "
                        "or position steps (this one has no extends)",
                    )
                )
    return out


class ResolvedProfile(BaseModel):
    """A profile with ``extends`` applied: ordered phases of full steps, ready to plan.

    ``vars`` are the base's overlaid by each derived profile; ``backup_paths`` are the
    base's followed by the derived ones (duplicates dropped). ``match`` is never inherited:
    a profile without its own is abstract. ``chain`` lists the files it came from, this
    profile's own file first and the root base last.
    """

    model_config = _STRICT

    id: Slug
    description: str
    match: Match | None
    vars: dict[str, VarValue]
    backup_paths: list[str]
    phases: dict[str, list[Step]]
    source_file: str
    chain: list[str]

    @property
    def abstract(self) -> bool:
        """True when the profile has no match: usable only as a base."""
        return self.match is None

    @property
    def platform(self) -> Platform:
        """``windows`` (steps are PowerShell) when it matches Windows, else ``linux``."""
        return "windows" if self.match is not None and self.match.windows else "linux"

    def step(self, phase: str, name: str) -> Step | None:
        """The step ``name`` of ``phase``, or None."""
        return next((s for s in self.phases.get(phase, []) if s.name == name), None)


# ------------------------------------------------------------------------------- playbooks


class Playbook(BaseModel):
    """Which phases run, in which order, and whether a recorded backup is required."""

    model_config = _STRICT

    name: Slug = Field(json_schema_extra=_x(_SLUG_TEXT))
    description: Description = Field(json_schema_extra=_x("a one-line description"))
    phases: list[Slug] = Field(
        min_length=1,
        json_schema_extra=_x("a non-empty list of phase names", item=f"a phase name: {_SLUG_TEXT}"),
    )
    requires_backup: bool = Field(json_schema_extra=_x("true or false"))

    @model_validator(mode="after")
    def _order(self) -> Playbook:
        seen: set[str] = set()
        for i, phase in enumerate(self.phases):
            if phase in seen:
                raise _rule(f'phase "{phase}" is listed twice', "phases", i)
            seen.add(phase)
        if BACKUP_PHASE in seen and self.phases[0] != BACKUP_PHASE:
            raise _rule(
                f'"{BACKUP_PHASE}" must be the first phase: nothing may change before it',
                "phases",
                self.phases.index(BACKUP_PHASE),
            )
        if self.requires_backup and BACKUP_PHASE not in seen:
            raise _rule(
                f'requires_backup: true needs a "{BACKUP_PHASE}" phase first', "requires_backup"
            )
        return self
