"""The data model of distro profiles and playbooks (pydantic v2, strict and frozen).

A *profile* (``distro_profiles/*.yaml``) names its phases, each a list of step entries. In
a profile that ``extends`` another, an entry is one of:

* a full :data:`NewStep` (a step plus optional ``before:``/``after:`` NAME),
* a :data:`StepOverride` ``{name, override: true, <some step fields>}``,
* a :class:`StepDrop` ``{name, drop: true}``.

The step models are generated from the one definition of a step,
:class:`agent.records.Step` (its fields and their :class:`~agent.records.FieldRule`):
``StepModel`` checks a full step, ``NewStep`` adds the anchors, ``StepOverride`` makes
every field optional with the same checks. Validated data becomes the pydantic-free
records of :mod:`agent.records` (``to_record``, :func:`step_from_model`).

A *playbook* (``playbooks/*.yaml``) says which phases run, in which order. After
``extends`` is resolved (``agent.catalog``), a profile becomes a
:class:`agent.records.ResolvedProfile` whose phases hold plain step records only.

Everything read from YAML is checked here, field by field: a ``when`` always parses,
templates are dotted paths. The rules across a step's fields hold wherever a step is
built (YAML, an override merged into its base, code: the record checks them too), so a
destructive step can never carry retries.
"""

from __future__ import annotations

import dataclasses
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
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agent import expressions, records
from agent.errors import ValidationError
from agent.excerpt import excerpt
from agent.records import BACKUP_PHASE, SLUG_TEXT, VersionRange, parse_version_range

__all__ = [
    "BACKUP_PHASE",
    "Entry",
    "Match",
    "NewStep",
    "Playbook",
    "Profile",
    "StepDrop",
    "StepEntry",
    "StepModel",
    "StepOverride",
    "VarValue",
    "VersionRange",
    "WindowsMatch",
    "entry_of",
    "override_changes",
    "parse_version_range",
    "profile_structure_problems",
    "step_from_model",
    "validate_step",
]

Loc = tuple[str | int, ...]

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
VAR_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_SLUG_TEXT = SLUG_TEXT


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


# ---------------------------------------------------------------------------------- steps

#: The schema's value types, by the ``kind`` a :class:`~agent.records.FieldRule` names.
_KINDS: dict[str, Any] = {
    "slug": Slug,
    "description": Description,
    "script": Script,
    "when": WhenExpr,
    "bool": bool,
    "int": int,
    "float": float,
    "exit_codes": list[ExitCode],
    "on_failure": OnFailure,
    "slugs": list[Slug],
}


_RUN_FILE_TEXT = "a file beside the profile holding the script (a relative path)"
# The loader reads ``run_file`` into ``run`` (agent.scriptfiles) before validation: the
# field is here so that a document whose file could not be read is not also told that
# run_file is unknown, and so that editors see the file's form in the JSON Schema.
_RUN_FILE: Any = (str | None, Field(default=None, json_schema_extra=_x(_RUN_FILE_TEXT)))
_NOT_STEP_FIELDS = {"before", "after", "run_file"}


def _step_fields(*, optional: bool) -> dict[str, Any]:
    """``create_model`` field definitions for every field of :class:`agent.records.Step`.

    ``optional``: every field but ``name`` may be left out and defaults to None (an
    override); else each keeps the record's default (a tuple default becomes a list:
    YAML gives lists and the models are strict).
    """
    out: dict[str, Any] = {}
    for spec in dataclasses.fields(records.Step):
        rule: records.FieldRule = spec.metadata["rule"]
        tp = _KINDS[rule.kind]
        bounds = {k: v for k in ("gt", "ge", "min_length") if (v := getattr(rule, k)) is not None}
        info: dict[str, Any] = {**bounds, "json_schema_extra": _x(rule.expected, rule.item)}
        if spec.name == "name":
            out[spec.name] = (tp, Field(**info))
        elif optional or spec.default is None:
            out[spec.name] = (tp | None, Field(default=None, **info))
        elif spec.default is dataclasses.MISSING:
            out[spec.name] = (tp, Field(**info))
        elif isinstance(spec.default, tuple):
            factory = _list_factory(list(spec.default))
            out[spec.name] = (tp, Field(default_factory=factory, **info))
        else:
            out[spec.name] = (tp, Field(default=spec.default, **info))
    return out


def _override_fields() -> dict[str, Any]:
    fields = _step_fields(optional=True)
    name = fields.pop("name")
    out = {"name": name, "override": (Literal[True], Field(json_schema_extra=_x("true")))}
    for key, value in fields.items():
        out[key] = value
        if key == "run":  # an override may replace the script by a file's, like a step
            out["run_file"] = _RUN_FILE
    return out


def _list_factory(default: list[Any]) -> Callable[[], list[Any]]:
    return lambda: list(default)


def _after(check: Callable[[Any], Any]) -> Any:
    """``check`` as a model validator for ``create_model`` (run once the fields are valid)."""
    return model_validator(mode="after")(check)


def _step_rules(self: Any) -> Any:
    violation = records.step_rule_violation(self)
    if violation is not None:
        raise _rule(*violation)
    return self


def _one_anchor(self: Any) -> Any:
    if self.before is not None and self.after is not None:
        raise _rule("give before or after, not both", "after")
    return self


#: A full step as written (validated, then turned into a :class:`agent.records.Step`).
StepModel: type[BaseModel] = create_model(
    "Step",
    __config__=_STRICT,
    __doc__=records.Step.__doc__,
    __validators__={"_step_rules": _after(_step_rules)},
    **_step_fields(optional=False),
)


def _run_or_run_file(schema: dict[str, Any]) -> None:
    schema["required"] = [k for k in schema.get("required", []) if k != "run"]
    schema["oneOf"] = [{"required": ["run"]}, {"required": ["run_file"]}]


#: A full step in a profile; ``before``/``after`` place it among the base's steps.
NewStep: type[BaseModel] = create_model(
    "NewStep",
    __base__=StepModel,
    __doc__="A full step in a profile; ``before``/``after`` place it among the base's steps.",
    __validators__={"_one_anchor": _after(_one_anchor)},
    run_file=_RUN_FILE,
    before=(Slug | None, Field(default=None, json_schema_extra=_x("a step name"))),
    after=(Slug | None, Field(default=None, json_schema_extra=_x("a step name"))),
)
NewStep.model_config["json_schema_extra"] = _run_or_run_file
NewStep.model_rebuild(force=True)

#: ``{name, override: true, ...}``: the step's fields, each optional, with the same checks.
StepOverride: type[BaseModel] = create_model(
    "StepOverride",
    __config__=_STRICT,
    __doc__="``{name, override: true, ...}``: these fields replace the base step's.",
    **_override_fields(),
)


def step_from_model(model: BaseModel) -> records.Step:
    """The record of a validated :data:`StepModel` or :data:`NewStep`."""
    return records.Step(**model.model_dump(exclude=_NOT_STEP_FIELDS))


def override_changes(model: BaseModel) -> dict[str, Any]:
    """The step fields an override sets (``when: null`` is not expressible: omit it)."""
    return {
        k: getattr(model, k)
        for k in model.model_fields_set
        if k not in ("name", "override", "run_file") and getattr(model, k) is not None
    }


def validate_step(data: dict[str, Any]) -> records.Step:
    """Validate a step's fields (a merge of a step and an override) into a record."""
    return step_from_model(StepModel.model_validate(data))


@dataclass(frozen=True)
class Entry:
    """One validated entry of a profile's phase, as the catalog lays it over the base.

    ``step`` is set for a new step (placed ``before``/``after`` a base step, or appended),
    ``changes`` for an override; a drop has neither.
    """

    kind: Literal["step", "override", "drop"]
    name: str
    step: records.Step | None = None
    before: str | None = None
    after: str | None = None
    changes: dict[str, Any] = dataclasses.field(default_factory=dict)


def entry_of(model: BaseModel) -> Entry:
    """The :class:`Entry` of a validated ``NewStep``, ``StepOverride`` or ``StepDrop``."""
    kind = _entry_kind(model)
    name = str(model.model_dump(include={"name"})["name"])
    if kind == "@override":
        return Entry("override", name, changes=override_changes(model))
    if kind == "@drop":
        return Entry("drop", name)
    anchors = model.model_dump(include={"before", "after"})
    return Entry("step", name, step_from_model(model), anchors["before"], anchors["after"])


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


StepEntry: Any = Annotated[
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

    def to_record(self) -> records.WindowsMatch:
        return records.WindowsMatch(
            product_type=self.product_type,
            build=self.build,
            edition_id=list(self.edition_id),
            installation_type=list(self.installation_type),
        )


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

    def to_record(self) -> records.Match:
        return records.Match(
            ids=list(self.ids),
            id_like=list(self.id_like),
            version=self.version,
            windows=self.windows.to_record() if self.windows is not None else None,
        )


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

    def to_record(self) -> records.Playbook:
        return records.Playbook(
            self.name, self.description, list(self.phases), self.requires_backup
        )
