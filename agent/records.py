"""The catalog's records: a step, a profile's match, a resolved profile, a playbook.

Plain frozen dataclasses that import no pydantic: :mod:`agent.schema` validates YAML
into them (its pydantic models are generated from :class:`Step`'s fields), and the
catalog cache (:mod:`agent.catalog_cache`) rebuilds them from JSON on a hit without
importing pydantic at all. :class:`Step` is the one definition of a step: each field's
metadata (:class:`FieldRule`) says how the schema checks it, and the schema derives the
step, override and new-step models from it.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agent.excerpt import excerpt

# Versions are compared only to match a target or to check a range: a command that just
# reads the catalog (from the cache) does not import the expression language.
if TYPE_CHECKING:
    from agent import expressions

__all__ = [
    "BACKUP_PHASE",
    "PREFLIGHT_PHASE",
    "VERIFY_PHASE",
    "FieldRule",
    "Match",
    "Platform",
    "Playbook",
    "ResolvedProfile",
    "Step",
    "VersionRange",
    "WindowsMatch",
    "is_verification_phase",
    "parse_version_range",
    "step_rule_violation",
]

#: The phase the backup provider runs; profiles may not put steps in it.
BACKUP_PHASE = "backup"
#: Steps that only look: a failure there stops the run before anything changed.
PREFLIGHT_PHASE = "preflight"
#: Steps that check the result: every one runs, failures are collected.
VERIFY_PHASE = "verify"


def is_verification_phase(phase: str) -> bool:
    """`verify`, or a playbook's own such as azure-ready's `azure-verify`: their steps are
    the run's verification (result.json ``verification``, JUnit failures)."""
    return phase == VERIFY_PHASE or phase.endswith(f"-{VERIFY_PHASE}")


Platform = Literal["linux", "windows"]

SLUG_TEXT = "a slug (lowercase letters, digits and '-', not starting with '-')"


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
        from agent import expressions

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
    from agent import expressions

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


@dataclass(frozen=True)
class FieldRule:
    """How :mod:`agent.schema` checks one step field, and how its errors word it.

    ``kind`` names one of the schema's value types (``slug``, ``script``, ``when``...);
    ``gt``/``ge``/``min_length`` are its bounds; ``expected`` and ``item`` are the words
    of an error message (``expected an integer > 0 (seconds), got "fast"``).
    """

    kind: str
    expected: str
    item: str | None = None
    gt: int | None = None
    ge: int | None = None
    min_length: int | None = None


def _field(kind: str, expected: str, default: Any = dataclasses.MISSING, **more: Any) -> Any:
    return field(default=default, metadata={"rule": FieldRule(kind, expected, **more)})


@dataclass(frozen=True, kw_only=True)
class Step:
    """One self-describing command: what it does, how to run it, what failure means."""

    name: str = _field("slug", SLUG_TEXT)
    description: str = _field("description", "a one-line description")
    run: str = _field("script", "a shell script (a string)")
    become: bool = _field("bool", "true or false", True)
    when: str | None = _field("when", "an expression (a string)", None)
    timeout: int = _field("int", "an integer > 0 (seconds)", 600, gt=0)
    retries: int = _field("int", "an integer >= 0", 0, ge=0)
    retry_delay: float = _field("float", "a number >= 0 (seconds)", 5.0, ge=0)
    ok_exit_codes: tuple[int, ...] = _field(
        "exit_codes",
        "a non-empty list of exit codes",
        (0,),
        item="an integer 0-255",
        min_length=1,
    )
    on_failure: str = _field("on_failure", "one of abort, continue, ignore", "abort")
    destructive: bool = _field("bool", "true or false", False)
    # Exit 0 means "this destructive step's effect is in place". `run --resume` runs it
    # instead of the step when an interrupted run started the step but never saw it end.
    resume_check: str | None = _field("script", "a shell script (a string)", None)
    expect_disconnect: bool = _field("bool", "true or false", False)
    no_log: bool = _field("bool", "true or false", False)
    tags: tuple[str, ...] = _field("slugs", "a list of slugs", (), item=SLUG_TEXT)
    enabled: bool = _field("bool", "true or false", True)

    def __post_init__(self) -> None:
        # Lists from YAML, JSON or a test become tuples: a frozen record stays frozen.
        object.__setattr__(self, "ok_exit_codes", tuple(self.ok_exit_codes))
        object.__setattr__(self, "tags", tuple(self.tags))
        violation = step_rule_violation(self)
        if violation is not None:
            raise ValueError(violation[0])

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready data (lists, not tuples)."""
        data = dataclasses.asdict(self)
        data["ok_exit_codes"] = list(self.ok_exit_codes)
        data["tags"] = list(self.tags)
        return data


def _step_of(data: Mapping[str, Any]) -> Step:
    return Step(**data)


class _RuleFields(Protocol):
    @property
    def destructive(self) -> bool: ...
    @property
    def retries(self) -> int: ...
    @property
    def on_failure(self) -> str: ...
    @property
    def resume_check(self) -> str | None: ...


def step_rule_violation(step: _RuleFields) -> tuple[str, str] | None:
    """The rule across a step's fields it breaks, as (message, field), or None."""
    # The point of no return runs exactly once and stops the run if it fails.
    if step.destructive and step.retries > 0:
        return "a destructive step may not be retried (retries must be 0)", "retries"
    if step.destructive and step.on_failure != "abort":
        return "a destructive step must have on_failure: abort", "on_failure"
    if step.resume_check is not None and not step.destructive:
        # Other steps are simply run again by `run --resume` (they are idempotent).
        return "resume_check is only for destructive steps", "resume_check"
    return None


# -------------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class WindowsMatch:
    """Which Windows targets a profile is for (see :class:`agent.schema.WindowsMatch`)."""

    product_type: str
    build: str | None = None
    edition_id: list[str] = field(default_factory=list)
    installation_type: list[str] = field(default_factory=list)

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


@dataclass(frozen=True)
class Match:
    """Which targets a profile is for (see :class:`agent.schema.Match`)."""

    ids: list[str] = field(default_factory=list)
    id_like: list[str] = field(default_factory=list)
    version: str | None = None
    windows: WindowsMatch | None = None

    @property
    def version_range(self) -> VersionRange | None:
        return parse_version_range(self.version) if self.version else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Match:
        windows = data.get("windows")
        return cls(
            ids=list(data.get("ids", [])),
            id_like=list(data.get("id_like", [])),
            version=data.get("version"),
            windows=WindowsMatch(**windows) if windows is not None else None,
        )


@dataclass(frozen=True)
class ResolvedProfile:
    """A profile with ``extends`` applied: ordered phases of full steps, ready to plan.

    ``vars`` are the base's overlaid by each derived profile; ``backup_paths`` are the
    base's followed by the derived ones (duplicates dropped). ``match`` is never inherited:
    a profile without its own is abstract. ``chain`` lists the files it came from, this
    profile's own file first and the root base last.
    """

    id: str
    description: str
    match: Match | None
    vars: dict[str, Any]
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

    def to_dict(self, step: Callable[[Step], Any] = Step.to_dict) -> dict[str, Any]:
        """JSON-ready data; ``step`` gives what stands for each step (default: its fields)."""
        data: dict[str, Any] = {
            "id": self.id,
            "description": self.description,
            "match": self.match.to_dict() if self.match else None,
            "vars": self.vars,
            "backup_paths": self.backup_paths,
            "phases": {p: [step(s) for s in steps] for p, steps in self.phases.items()},
            "source_file": self.source_file,
            "chain": self.chain,
        }
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], step: Callable[[Any], Step] = _step_of
    ) -> ResolvedProfile:
        """Rebuild from :meth:`to_dict`'s data (``step`` undoes its ``step``)."""
        match = data["match"]
        return cls(
            id=str(data["id"]),
            description=str(data["description"]),
            match=Match.from_dict(match) if match is not None else None,
            vars=dict(data["vars"]),
            backup_paths=list(data["backup_paths"]),
            phases={p: [step(s) for s in steps] for p, steps in data["phases"].items()},
            source_file=str(data["source_file"]),
            chain=list(data["chain"]),
        )


# ------------------------------------------------------------------------------- playbooks


@dataclass(frozen=True)
class Playbook:
    """Which phases run, in which order, and whether a recorded backup is required."""

    name: str
    description: str
    phases: list[str]
    requires_backup: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Playbook:
        return cls(
            name=str(data["name"]),
            description=str(data["description"]),
            phases=list(data["phases"]),
            requires_backup=bool(data["requires_backup"]),
        )
