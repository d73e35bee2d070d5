"""Find built-in and user YAML, resolve ``extends``, and match a target to a profile.

Where files come from, weakest first (a later layer overrides an earlier one by id):

1. the built-in directories: ``agent/_builtin/{distro_profiles,playbooks}`` inside an
   installed wheel, or ``<checkout>/{distro_profiles,playbooks}`` in a checkout
   (:func:`builtin_dir` is the one place that decides);
2. each ``--profiles-dir`` / ``--playbooks-dir`` in the order given.

Two files with one id in the same directory are an error. The catalog remembers which
file won and what it shadowed (:meth:`Catalog.profile_origin`). A profile may extend its
own id: it then extends the definition it shadows (tweak the built-in ``debian`` while
keeping its id and match).

Everything is parsed, resolved and checked when the catalog is built, so a broken file
fails early and in full: schema problems raise :class:`~agent.errors.SchemaError` (every
problem of every file, located), a broken ``extends`` chain or an unknown id raises
:class:`~agent.errors.CatalogError`.

What a load built is cached (:mod:`agent.catalog_cache`): the key is every file the load
read through :func:`agent.safefiles.read_regular` and every directory it listed
(:mod:`agent.readlog`), so a new kind of file a profile refers to is covered as long as it
is read that way. The catalog itself holds only the plain records of :mod:`agent.records`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent import catalog_cache, readlog
from agent.errors import CatalogError, SchemaError, SchemaProblem
from agent.records import Playbook, ResolvedProfile, Step, VersionRange

# Parsing and validating (PyYAML, pydantic) are imported where a file is loaded: a
# catalog read from the cache (agent.catalog_cache) needs neither.
if TYPE_CHECKING:
    from agent import schema
    from agent.scriptfiles import ScriptFile
    from agent.yamlload import YamlDocument

__all__ = [
    "Catalog",
    "CatalogCheck",
    "CatalogFileError",
    "Origin",
    "builtin_dir",
    "check_files",
    "detect_kind",
    "files_to_validate",
    "load_file",
    "validate_files",
]

Kind = Literal["profile", "playbook"]
_DIRNAMES: dict[Kind, str] = {"profile": "distro_profiles", "playbook": "playbooks"}
_SUFFIXES = (".yaml", ".yml")


def builtin_dir(kind: Kind) -> Path:
    """The directory holding the built-in profiles or playbooks, installed or not."""
    package = Path(__file__).resolve().parent
    name = _DIRNAMES[kind]
    for candidate in (package / "_builtin" / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise CatalogError(
        f"built-in {name} not found (looked in {package / '_builtin' / name} and "
        f"{package.parent / name}); the installation is incomplete"
    )


class CatalogFileError(CatalogError):
    """A catalog problem one file can be blamed for (broken ``extends``, a duplicate id)."""

    def __init__(self, message: str, file: str) -> None:
        super().__init__(message)
        self.file = file


@dataclass(frozen=True)
class Origin:
    """Which file defines an id, and which files with the same id it shadows."""

    kind: Kind
    id: str
    file: str
    path: Path
    builtin: bool
    shadowed: tuple[str, ...] = ()  # strongest first


@dataclass(frozen=True)
class _Source:
    doc: YamlDocument
    path: Path
    layer: int  # 0 = built-in, 1.. = user directories in the order given
    builtin: bool


@dataclass(frozen=True)
class _ProfileSource(_Source):
    profile: schema.Profile
    # The run_file scripts read (the cache key comes from agent.readlog, which saw them).
    scripts: tuple[ScriptFile, ...] = ()


@dataclass(frozen=True)
class _PlaybookSource(_Source):
    playbook: Playbook


# Where each resolved step was last defined or changed: (document, location of the entry).
_StepOrigins = dict[tuple[str, str], tuple["YamlDocument", tuple[str | int, ...]]]


@dataclass
class _Resolution:
    profile: ResolvedProfile
    origins: _StepOrigins = field(default_factory=dict)


def detect_kind(data: Any, path: Path | None = None) -> Kind | None:
    """Tell a profile from a playbook: by top-level keys, else by the directory name."""
    if isinstance(data, dict):
        if "id" in data:
            return "profile"
        if "name" in data:
            return "playbook"
    if path is not None:
        for kind, dirname in _DIRNAMES.items():
            if path.parent.name == dirname:
                return kind
    return None


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise CatalogError(f"{directory}: not a directory")
    found = sorted(p for p in directory.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    readlog.note_listing(directory)
    return found


def _load_source(
    path: Path, display: str, layer: int, builtin: bool, expect: Kind | None
) -> _ProfileSource | _PlaybookSource:
    """Parse and validate one file; SchemaError carries all its problems."""
    from agent.schema import Playbook as PlaybookModel
    from agent.schema import Profile, profile_structure_problems
    from agent.scriptfiles import inline_run_files
    from agent.yamlload import load_yaml, validate_document

    doc = load_yaml(path, display)
    if not isinstance(doc.data, dict):
        message = "expected a mapping (a profile or a playbook) at the top level"
        raise SchemaError([doc.problem((), message)])
    kind = detect_kind(doc.data, path)
    if expect is not None and kind is not None and kind != expect:
        other = _DIRNAMES[kind]
        raise SchemaError(
            [
                doc.problem(
                    (),
                    f"this looks like a {kind}, but it is in a {expect} directory "
                    f"(move it to {other}/)",
                )
            ]
        )
    kind = kind or expect
    if kind == "profile":
        scripts = inline_run_files(doc, path.parent)
        doc = scripts.doc
        try:
            profile = validate_document(doc, Profile)
        except SchemaError as exc:
            seen = {(p.line, p.column) for p in exc.problems}
            rules = [
                problem
                for loc, message in profile_structure_problems(doc.data)
                if (problem := doc.problem(loc, message, key="[key]" in loc)).line is None
                or (problem.line, problem.column) not in seen  # one line per spot
            ]
            raise SchemaError(_sorted([*exc.problems, *rules, *scripts.problems])) from None
        if scripts.problems:
            raise SchemaError(_sorted(scripts.problems))
        return _ProfileSource(doc, path, layer, builtin, profile, scripts.files)
    if kind == "playbook":
        playbook = validate_document(doc, PlaybookModel).to_record()
        return _PlaybookSource(doc, path, layer, builtin, playbook)
    raise SchemaError(
        [doc.problem((), "cannot tell a profile (has id:) from a playbook (has name:)")]
    )


def load_file(
    path: Path, display: str | None = None, kind: Kind | None = None
) -> schema.Profile | Playbook:
    """Parse and validate one profile or playbook file on its own (no ``extends``).

    ``kind`` is told from the content (or the directory name) when not given. All the
    file's problems raise one SchemaError; ``display`` is how messages name the file.
    """
    src = _load_source(path, display or str(path), 0, False, kind)
    if isinstance(src, _ProfileSource):
        return src.profile
    assert isinstance(src, _PlaybookSource)
    return src.playbook


def _load_dirs(
    dirs: Iterable[tuple[Path, int, bool, Kind]], skip: set[Path]
) -> tuple[list[_Source], list[SchemaProblem]]:
    sources: list[_Source] = []
    problems: list[SchemaProblem] = []
    for directory, layer, builtin, kind in dirs:
        for path in _yaml_files(directory):
            if path.resolve() in skip:
                continue
            display = f"{_DIRNAMES[kind]}/{path.name}" if builtin else str(directory / path.name)
            try:
                sources.append(_load_source(path, display, layer, builtin, kind))
            except SchemaError as exc:
                problems.extend(exc.problems)
    return sources, problems


@dataclass(frozen=True)
class _Contents:
    """What a built catalog knows: each winning profile (resolved) and playbook, the
    file each came from, and the ids each profile extends. The cache stores this."""

    profiles: dict[str, ResolvedProfile]
    profile_origins: dict[str, Origin]
    ancestors: dict[str, list[str]]
    playbooks: dict[str, Playbook]
    playbook_origins: dict[str, Origin]

    def to_dict(self) -> dict[str, Any]:
        # Each step once: profiles share the steps they inherit (a tenth of the size).
        steps: dict[Step, int] = {}

        def number(step: Step) -> int:
            return steps.setdefault(step, len(steps))

        profiles = {k: p.to_dict(number) for k, p in self.profiles.items()}
        return {
            "steps": [s.to_dict() for s in steps],
            "profiles": profiles,
            "profile_origins": {k: _origin_dict(o) for k, o in self.profile_origins.items()},
            "ancestors": self.ancestors,
            "playbooks": {k: p.to_dict() for k, p in self.playbooks.items()},
            "playbook_origins": {k: _origin_dict(o) for k, o in self.playbook_origins.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Contents:
        """Rebuild from :meth:`to_dict`'s data; KeyError/TypeError/ValueError/IndexError if
        foreign."""
        steps = [Step(**s) for s in data["steps"]]

        def step(number: Any) -> Step:
            if not isinstance(number, int):
                raise TypeError(f"a step number, got {type(number).__name__}")
            return steps[number]

        return cls(
            profiles={k: ResolvedProfile.from_dict(v, step) for k, v in data["profiles"].items()},
            profile_origins={k: _origin_of(v) for k, v in data["profile_origins"].items()},
            ancestors={k: [str(a) for a in v] for k, v in data["ancestors"].items()},
            playbooks={k: Playbook.from_dict(v) for k, v in data["playbooks"].items()},
            playbook_origins={k: _origin_of(v) for k, v in data["playbook_origins"].items()},
        )


def _origin_dict(origin: Origin) -> dict[str, Any]:
    return {
        "kind": origin.kind,
        "id": origin.id,
        "file": origin.file,
        "path": str(origin.path),
        "builtin": origin.builtin,
        "shadowed": list(origin.shadowed),
    }


def _origin_of(data: Mapping[str, Any]) -> Origin:
    kind = data["kind"]
    if kind not in _DIRNAMES:
        raise ValueError(f"not a catalog kind: {kind!r}")
    return Origin(
        kind=kind,
        id=str(data["id"]),
        file=str(data["file"]),
        path=Path(data["path"]),
        builtin=bool(data["builtin"]),
        shadowed=tuple(str(f) for f in data["shadowed"]),
    )


class Catalog:
    """All known profiles (resolved) and playbooks, with where each came from."""

    def __init__(self, contents: _Contents) -> None:
        """Prefer :meth:`load` (or :meth:`from_sources`)."""
        self._contents = contents

    @classmethod
    def from_sources(cls, sources: Iterable[_Source]) -> Catalog:
        """Resolve loaded sources into a catalog; raises SchemaError/CatalogError."""
        return cls(_Builder(sources).contents())

    @classmethod
    def load(
        cls,
        profiles_dirs: Sequence[Path] = (),
        playbooks_dirs: Sequence[Path] = (),
        *,
        builtin: bool = True,
    ) -> Catalog:
        """Load the built-ins (unless ``builtin=False``) and the user directories.

        Unchanged files come from the cache (:mod:`agent.catalog_cache`): what a load
        read is recorded (every file read through :func:`agent.safefiles.read_regular`
        and every directory listed), and a later load with the same arguments takes the
        stored catalog while each of those files and listings is byte for byte the same.
        """
        dirs: list[tuple[Path, int, bool, Kind]] = []
        if builtin:
            dirs += [(builtin_dir("profile"), 0, True, "profile")]
            dirs += [(builtin_dir("playbook"), 0, True, "playbook")]
        dirs += [(Path(d), i + 1, False, "profile") for i, d in enumerate(profiles_dirs)]
        dirs += [(Path(d), i + 1, False, "playbook") for i, d in enumerate(playbooks_dirs)]
        # The path as given names files in messages; resolved, it says which directory.
        key = [[str(d), str(d.resolve()), layer, kind] for d, layer, _b, kind in dirs]
        stored = catalog_cache.lookup(key)
        if stored is not None:
            try:
                return cls(_Contents.from_dict(stored))
            except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                pass  # written by another version, or damaged: load the files instead
        with readlog.recording() as reads:
            sources, problems = _load_dirs(dirs, set())
            if problems:
                raise SchemaError(problems)
            catalog = cls.from_sources(sources)
        catalog_cache.store(key, reads, catalog._contents.to_dict())
        return catalog

    # ----------------------------------------------------------------------- lookups

    def profile_ids(self, *, include_abstract: bool = True) -> list[str]:
        """Known profile ids, sorted."""
        profiles = self._contents.profiles
        return sorted(pid for pid in profiles if include_abstract or not profiles[pid].abstract)

    def playbook_names(self) -> list[str]:
        """Known playbook names, sorted."""
        return sorted(self._contents.playbooks)

    def profiles(self) -> list[ResolvedProfile]:
        """Every winning profile, resolved, sorted by id."""
        return [self._contents.profiles[pid] for pid in self.profile_ids()]

    def get_profile(self, profile_id: str) -> ResolvedProfile:
        """The resolved profile ``profile_id``; CatalogError listing the known ones."""
        if profile_id not in self._contents.profiles:
            raise CatalogError(
                f"unknown profile {profile_id} (known: {', '.join(self.profile_ids())})"
            )
        return self._contents.profiles[profile_id]

    def get_playbook(self, name: str) -> Playbook:
        """The playbook ``name``; CatalogError listing the known ones."""
        if name not in self._contents.playbooks:
            known = ", ".join(self.playbook_names())
            raise CatalogError(f"unknown playbook {name} (known: {known})")
        return self._contents.playbooks[name]

    def profile_file(self, profile_id: str) -> str:
        """How messages name the file that defines ``profile_id`` (see profile_origin)."""
        return self.profile_origin(profile_id).file

    def playbook_file(self, name: str) -> str:
        """How messages name the file that defines playbook ``name``."""
        return self.playbook_origin(name).file

    def profile_origin(self, profile_id: str) -> Origin:
        """Which file defines ``profile_id`` and which it shadows."""
        self.get_profile(profile_id)
        return self._contents.profile_origins[profile_id]

    def profile_paths(self, profile_id: str) -> list[Path]:
        """The files ``profile_id`` came from (its own first, as ``chain``), as real paths.

        ``chain`` names them for messages (a built-in as ``distro_profiles/NAME.yaml``,
        which is not a path from the current directory); a run's journal records these.
        """
        by_name = {o.file: o.path for o in self._contents.profile_origins.values()}
        builtin = f"{_DIRNAMES['profile']}/"
        paths = []
        for name in self.get_profile(profile_id).chain:
            if name in by_name:
                paths.append(by_name[name].resolve())
            elif name.startswith(builtin):  # a built-in that a file of the same id shadows
                paths.append(builtin_dir("profile") / name.removeprefix(builtin))
            else:
                paths.append(Path(name).resolve())
        return paths

    def playbook_origin(self, name: str) -> Origin:
        """Which file defines playbook ``name`` and which it shadows."""
        self.get_playbook(name)
        return self._contents.playbook_origins[name]

    # ----------------------------------------------------------------------- matching

    def match_profile(self, os_release: Mapping[str, Any]) -> ResolvedProfile:
        """The most specific profile for a target's os-release.

        ``os_release`` has ``ID``, ``ID_LIKE`` (space-separated, or a list) and
        ``VERSION_ID``; lowercase keys (``facts["os"]``) work too. A Windows target has
        ``ID=windows`` and ``WINDOWS_PRODUCT_TYPE``, ``WINDOWS_BUILD``... (facts_windows),
        which only ``match.windows`` profiles consider. Specificity: a match on ID (or
        Windows product) beats one on ID_LIKE; then a version-constrained match beats an
        unconstrained one. Equal best matches are an error naming both; no match is an
        error listing the known profiles and what the target reported.
        """
        from agent.targets import WINDOWS_ID  # here: the plan of a --profile needs no URLs

        os_id, like, version_id = _os_fields(os_release)
        if os_id == WINDOWS_ID:
            return self._match_windows(os_release)
        scored: list[tuple[tuple[int, int], ResolvedProfile]] = []
        notes: list[str] = []
        for prof in self.profiles():
            if prof.match is None or prof.match.windows is not None:
                continue
            by = 2 if os_id in prof.match.ids else 1 if set(like) & set(prof.match.id_like) else 0
            if not by:
                continue
            rng = prof.match.version_range
            if rng is not None and not rng.contains(version_id):
                notes.append(
                    f"{prof.id} matches by {'ID' if by == 2 else 'ID_LIKE'} but VERSION_ID "
                    f"{version_id or '(none)'} is outside {rng}"
                )
                continue
            scored.append(((by, 1 if rng is not None else 0), prof))
        reported = (
            f"ID={os_id or '(none)'}, ID_LIKE={' '.join(like) or '(none)'}, "
            f"VERSION_ID={version_id or '(none)'}"
        )
        return self._pick(scored, notes, reported)

    def _match_windows(self, os_release: Mapping[str, Any]) -> ResolvedProfile:
        """The profile for a Windows target: ProductType, build, EditionID, InstallationType
        (never the localized caption)."""
        reported_values = {
            "product_type": str(os_release.get("WINDOWS_PRODUCT_TYPE") or ""),
            "build": str(os_release.get("WINDOWS_BUILD") or ""),
            "edition_id": str(os_release.get("WINDOWS_EDITION_ID") or ""),
            "installation_type": str(os_release.get("WINDOWS_INSTALLATION_TYPE") or ""),
        }
        scored: list[tuple[tuple[int, int], ResolvedProfile]] = []
        notes: list[str] = []
        for prof in self.profiles():
            if prof.match is None or prof.match.windows is None:
                continue
            windows = prof.match.windows
            why = windows.mismatch(**reported_values)
            if why is not None:
                notes.append(f"{prof.id}: {why}")
                continue
            constraints = sum(
                bool(x) for x in (windows.build, windows.edition_id, windows.installation_type)
            )
            scored.append(((2, constraints), prof))
        reported = (
            f"Windows ProductType {reported_values['product_type'] or '(none)'}, build "
            f"{reported_values['build'] or '(none)'}, EditionID "
            f"{reported_values['edition_id'] or '(none)'}, InstallationType "
            f"{reported_values['installation_type'] or '(none)'}"
        )
        return self._pick(scored, notes, reported)

    def _pick(
        self,
        scored: list[tuple[tuple[int, int], ResolvedProfile]],
        notes: list[str],
        reported: str,
    ) -> ResolvedProfile:
        if not scored:
            known = "; ".join(_describe_match(p) for p in self.profiles() if p.match) or "none"
            why = f" ({'; '.join(notes)})" if notes else ""
            raise CatalogError(
                f"no profile matches the target ({reported}){why}; known profiles: {known}. "
                "Choose one with --profile or add your own with --profiles-dir"
            )
        best = max(score for score, _ in scored)
        winners = [p for score, p in scored if score == best]
        # A profile that extends another and matches the same target refines it (the
        # README's `my-debian` extends `debian`): the derived one wins over its bases.
        bases = {a for p in winners for a in self.ancestors(p.id)}
        winners = [p for p in winners if p.id not in bases]
        if len(winners) > 1:
            names = " and ".join(f"{p.id} ({p.source_file})" for p in winners)
            raise CatalogError(
                f"ambiguous: profiles {names} match the target ({reported}) equally well; "
                "narrow their match or choose one with --profile"
            )
        return winners[0]

    def ancestors(self, profile_id: str) -> set[str]:
        """The ids ``profile_id`` extends, directly or not (not itself)."""
        return set(self._contents.ancestors[profile_id])

    def ties(self) -> list[str]:
        """Pairs of profiles that some target would match equally well (an "ambiguous"
        refusal at run time), neither extending the other; one line each, for validate.

        Found by trying each pair on the targets their own matches name: every shared
        ID or ID_LIKE (or Windows product prefix) with the versions (builds) at and next
        to each bound of their ranges.
        """
        found: list[str] = []
        candidates = [p for p in self.profiles() if p.match is not None]
        for i, a in enumerate(candidates):
            for b in candidates[i + 1 :]:
                if a.id in self.ancestors(b.id) or b.id in self.ancestors(a.id):
                    continue
                example = self._tie_example(a, b)
                if example is not None:
                    found.append(
                        f"profiles {a.id} ({a.source_file}) and {b.id} ({b.source_file}) "
                        f"match {example} equally well: `--profile auto` would refuse it as "
                        "ambiguous; narrow one match, or make one extend the other"
                    )
        return found

    def _tie_example(self, a: ResolvedProfile, b: ResolvedProfile) -> str | None:
        """A target both profiles match with the same score and nothing scores higher."""
        from agent.targets import WINDOWS_ID

        if a.match is None or b.match is None:
            return None
        releases: list[dict[str, str]] = []
        if a.match.windows is not None and b.match.windows is not None:
            ranges = [r for r in (a.match.windows.build_range, b.match.windows.build_range) if r]
            product_types = {a.match.windows.product_type, b.match.windows.product_type}
            editions = {*a.match.windows.edition_id, *b.match.windows.edition_id} or {""}
            installs = {*a.match.windows.installation_type, *b.match.windows.installation_type}
            for product_type in product_types:
                for edition in editions:
                    for install in installs or {""}:
                        releases += [
                            {
                                "ID": WINDOWS_ID,
                                "WINDOWS_PRODUCT_TYPE": product_type,
                                "WINDOWS_BUILD": build,
                                "WINDOWS_EDITION_ID": edition,
                                "WINDOWS_INSTALLATION_TYPE": install,
                            }
                            for build in _probe_versions(ranges)
                        ]
        elif a.match.windows is None and b.match.windows is None:
            ranges = [r for r in (a.match.version_range, b.match.version_range) if r]
            versions = _probe_versions(ranges)
            for os_id in set(a.match.ids) & set(b.match.ids):
                releases += [{"ID": os_id, "VERSION_ID": v} for v in versions]
            for like in set(a.match.id_like) & set(b.match.id_like):
                releases += [{"ID": "", "ID_LIKE": like, "VERSION_ID": v} for v in versions]
        for release in releases:
            try:
                self.match_profile(release)
            except CatalogError as exc:
                text = str(exc)
                both = f" {a.id} (" in text and f" {b.id} (" in text
                if text.startswith("ambiguous") and both:
                    shown = ", ".join(f"{k}={v}" for k, v in release.items() if v)
                    return f"a target with {shown}"
        return None


class _Builder:
    """Loaded sources stacked by id (strongest first), each profile resolved."""

    def __init__(self, sources: Iterable[_Source]) -> None:
        """Raises SchemaError (every problem) or CatalogError (a broken ``extends``)."""
        self._profiles: dict[str, list[_ProfileSource]] = {}
        self._playbooks: dict[str, list[_PlaybookSource]] = {}
        for src in sources:
            if isinstance(src, _ProfileSource):
                self._profiles.setdefault(src.profile.id, []).append(src)
            elif isinstance(src, _PlaybookSource):
                self._playbooks.setdefault(src.playbook.name, []).append(src)
        for stacks in (self._profiles, self._playbooks):
            for key, stack in stacks.items():
                stack.sort(key=lambda s: -s.layer)
                _refuse_same_layer(key, stack)
        self._resolved: dict[tuple[str, int], _Resolution] = {}
        problems: list[SchemaProblem] = []
        for pid in sorted(self._profiles):
            problems.extend(self._resolve(pid, 0, ()))
        if problems:
            raise SchemaError(_unique(problems))

    def contents(self) -> _Contents:
        """The winners, their origins and ancestors: what a :class:`Catalog` looks up."""
        return _Contents(
            profiles={pid: self._resolved[(pid, 0)].profile for pid in self._profiles},
            profile_origins={
                pid: _origin("profile", pid, stack) for pid, stack in self._profiles.items()
            },
            ancestors={pid: sorted(self._ancestors(pid)) for pid in self._profiles},
            playbooks={name: stack[0].playbook for name, stack in self._playbooks.items()},
            playbook_origins={
                name: _origin("playbook", name, stack) for name, stack in self._playbooks.items()
            },
        )

    def _ancestors(self, profile_id: str) -> set[str]:
        found: set[str] = set()
        pid, index = profile_id, 0
        while True:
            src = self._profiles[pid][index]
            if src.profile.extends is None:
                return found - {profile_id}
            pid, index = self._base_key(src, index)
            found.add(pid)

    def _resolve(
        self, pid: str, index: int, visiting: tuple[tuple[str, int], ...]
    ) -> list[SchemaProblem]:
        """Resolve ``pid`` at ``index`` of its stack (0 = winner) into ``self._resolved``."""
        key = (pid, index)
        if key in self._resolved:
            return []
        src = self._profiles[pid][index]
        if key in visiting:
            cycle = [*visiting[visiting.index(key) :], key]
            chain = " -> ".join(f"{p} ({self._profiles[p][i].doc.file})" for p, i in cycle)
            raise CatalogFileError(f"circular extends: {chain}", src.doc.file)
        base: _Resolution | None = None
        problems: list[SchemaProblem] = []
        if src.profile.extends is not None:
            base_key = self._base_key(src, index)
            problems += self._resolve(*base_key, (*visiting, key))
            base = self._resolved[base_key]
        resolution, own = _apply(src, base)
        problems += own
        problems += _check_references(resolution)
        self._resolved[key] = resolution
        return problems

    def _base_key(self, src: _ProfileSource, index: int) -> tuple[str, int]:
        pid, base_id = src.profile.id, src.profile.extends
        assert base_id is not None
        if base_id == pid:
            if index + 1 >= len(self._profiles[pid]):
                raise CatalogFileError(
                    f'profile "{pid}" ({src.doc.file}) extends itself, but no weaker '
                    f'profile "{pid}" exists for it to extend',
                    src.doc.file,
                )
            return pid, index + 1
        if base_id not in self._profiles:
            raise CatalogFileError(
                f'profile "{pid}" ({src.doc.file}) extends unknown profile "{base_id}" '
                f"(known: {', '.join(sorted(self._profiles))})",
                src.doc.file,
            )
        return base_id, 0


def _probe_versions(ranges: Iterable[VersionRange]) -> list[str]:
    """Versions at and next to every bound of ``ranges`` ("12" gives 11, 12, 12.0.1, 13)."""
    versions = {"1"}
    for rng in ranges:
        for _op, bound in rng.clauses:
            parts = list(bound.parts)
            below = [*parts[:-1], parts[-1] - 1] if parts[-1] > 0 else None
            for option in (parts, [*parts, 0, 1], [*parts[:-1], parts[-1] + 1], below):
                if option is not None:
                    versions.add(".".join(str(n) for n in option))
    return sorted(versions)


def _refuse_same_layer(key: str, stack: Sequence[_Source]) -> None:
    for a, b in itertools.pairwise(stack):
        if a.layer == b.layer:
            raise CatalogFileError(
                f'"{key}" is defined twice in one directory: {b.doc.file} and {a.doc.file}',
                a.doc.file,
            )


def _origin(kind: Kind, key: str, stack: Sequence[_Source]) -> Origin:
    top = stack[0]
    shadowed = tuple(s.doc.file for s in stack[1:])
    return Origin(kind, key, top.doc.file, top.path, top.builtin, shadowed)


def _os_fields(os_release: Mapping[str, Any]) -> tuple[str, list[str], str]:
    def get(name: str) -> Any:
        return os_release.get(name, os_release.get(name.lower()))

    like = get("ID_LIKE") or []
    if isinstance(like, str):
        like = like.split()
    return str(get("ID") or ""), [str(x) for x in like], str(get("VERSION_ID") or "")


def _describe_match(prof: ResolvedProfile) -> str:
    assert prof.match is not None
    parts = []
    if prof.match.windows is not None:
        parts.append(prof.match.windows.describe())
    if prof.match.ids:
        parts.append(f"ID {'/'.join(prof.match.ids)}")
    if prof.match.id_like:
        parts.append(f"ID_LIKE {'/'.join(prof.match.id_like)}")
    if prof.match.version:
        parts.append(f"VERSION_ID {prof.match.version}")
    return f"{prof.id} ({', '.join(parts)})"


def _unique(problems: Iterable[SchemaProblem]) -> list[SchemaProblem]:
    return list(dict.fromkeys(problems))


def _sorted(problems: Iterable[SchemaProblem]) -> list[SchemaProblem]:
    """Unique, in file order (problems without a position first)."""
    return sorted(_unique(problems), key=lambda p: (p.file, p.line or 0, p.column or 0))


def _apply(
    src: _ProfileSource, base: _Resolution | None
) -> tuple[_Resolution, list[SchemaProblem]]:
    """Lay ``src`` over ``base``: override, drop, position and append steps."""
    prof, doc = src.profile, src.doc
    phases: dict[str, list[Step]] = {}
    origins: _StepOrigins = {}
    if base is not None:
        phases = {name: list(steps) for name, steps in base.profile.phases.items()}
        origins = dict(base.origins)
    problems: list[SchemaProblem] = []
    for phase, entries in prof.phases.items():
        edit = _PhaseEdit(prof.id, phase, doc, base, phases.setdefault(phase, []), origins)
        for i, entry in enumerate(entries):
            problems += edit.apply(i, entry)
    chain = [doc.file, *(base.profile.chain if base else [])]
    vars_ = {**(base.profile.vars if base else {}), **prof.vars}
    paths = list(dict.fromkeys([*(base.profile.backup_paths if base else []), *prof.backup_paths]))
    resolved = ResolvedProfile(
        id=prof.id,
        description=prof.description,
        match=prof.match.to_record() if prof.match is not None else None,
        vars=vars_,
        backup_paths=paths,
        phases=phases,
        source_file=doc.file,
        chain=chain,
    )
    return _Resolution(resolved, origins), problems


class _PhaseEdit:
    """One phase of a base profile being changed by the entries of a derived one.

    ``steps`` and ``origins`` are changed in place. The step names are kept in step with
    ``steps`` (not rebuilt per entry: that was quadratic, 10 s for a profile of 9000 steps).
    """

    def __init__(
        self,
        profile_id: str,
        phase: str,
        doc: YamlDocument,
        base: _Resolution | None,
        steps: list[Step],
        origins: _StepOrigins,
    ) -> None:
        self.profile_id, self.phase, self.doc, self.base = profile_id, phase, doc, base
        self.steps, self.origins = steps, origins
        self.names = [s.name for s in steps]
        self.present = set(self.names)
        self.last_after: dict[str, str] = {}

    def where(self) -> str:
        assert self.base is not None
        base = self.base.profile
        return f'phase "{self.phase}" of base profile "{base.id}" ({base.source_file})'

    def apply(self, i: int, model: Any) -> list[SchemaProblem]:
        """Apply entry ``i`` (a validated NewStep, StepOverride or StepDrop model)."""
        from agent.schema import entry_of

        entry = entry_of(model)
        loc: tuple[str | int, ...] = ("phases", self.phase, i)
        if entry.kind == "step":
            return self.add(loc, entry)
        if entry.name not in self.present:
            message = (
                f'profile "{self.profile_id}": {entry.kind} of step "{entry.name}": '
                f"no such step in {self.where()}"
            )
            return [self.doc.problem(loc, message)]
        if entry.kind == "drop":
            self.drop(entry.name)
            return []
        return self.override(loc, entry)

    def drop(self, name: str) -> None:
        at = self.names.index(name)
        del self.steps[at]
        del self.names[at]
        self.present.discard(name)
        self.origins.pop((self.phase, name), None)

    def override(self, loc: tuple[str | int, ...], entry: schema.Entry) -> list[SchemaProblem]:
        """Merge the override's fields into the base step; the result is checked whole."""
        import pydantic

        from agent.schema import StepModel, validate_step
        from agent.yamlload import problems_from_pydantic

        at = self.names.index(entry.name)
        try:
            self.steps[at] = validate_step(self.steps[at].to_dict() | entry.changes)
        except pydantic.ValidationError as exc:
            return problems_from_pydantic(self.doc, StepModel, exc, prefix=loc)
        self.origins[(self.phase, entry.name)] = (self.doc, loc)
        return []

    def add(self, loc: tuple[str | int, ...], entry: schema.Entry) -> list[SchemaProblem]:
        """Insert a new step before or after its anchor, or append it."""
        assert entry.step is not None
        if entry.name in self.present:
            message = (
                f'profile "{self.profile_id}": step "{entry.name}" already exists in '
                f"{self.where()}; use override: true to change it (or drop: true to remove it)"
            )
            return [self.doc.problem((*loc, "name"), message)]
        anchor = entry.before or entry.after
        position = len(self.steps)
        if anchor is not None:
            side = "before" if entry.before else "after"
            if anchor not in self.present:
                message = (
                    f'profile "{self.profile_id}": step "{entry.name}" is placed {side} '
                    f'"{anchor}", but there is no such step in {self.where()}'
                )
                return [self.doc.problem((*loc, side), message)]
            if entry.before:
                position = self.names.index(anchor)
            else:  # keep several steps placed after one anchor in the order written
                position = self.names.index(self.last_after.get(anchor, anchor)) + 1
                self.last_after[anchor] = entry.name
        self.steps.insert(position, entry.step)
        self.names.insert(position, entry.name)
        self.present.add(entry.name)
        self.origins[(self.phase, entry.name)] = (self.doc, loc)
        return []


def _check_references(res: _Resolution) -> list[SchemaProblem]:
    """Every ``vars.X`` a step uses is defined; every ``facts.X`` is a known fact."""
    from agent import expressions

    problems = []
    names = list(res.profile.vars)
    for phase, steps in res.profile.phases.items():
        for step in steps:
            doc, loc = res.origins[(phase, step.name)]
            fields = {"run": expressions.template_references(step.run)}
            if step.when is not None:
                fields["when"] = sorted(expressions.expression_references(step.when))
            for fname, refs in fields.items():
                known = expressions.known_facts(res.profile.platform)
                for message in expressions.check_references(refs, names, known):
                    problems.append(doc.problem((*loc, fname), message))
    return problems


# -------------------------------------------------------------------------- validation


def files_to_validate(paths: Sequence[Path] = ()) -> list[Path]:
    """The files :func:`validate_files` checks: directories expanded, none = the built-ins."""
    if not paths:
        paths = [builtin_dir("profile"), builtin_dir("playbook")]
    out: list[Path] = []
    for p in paths:
        out.extend(_yaml_files(p) if p.is_dir() else [p])
    return out


@dataclass(frozen=True)
class CatalogCheck:
    """What ``validate`` found: problems (exit 2) and warnings (profiles that tie)."""

    problems: list[SchemaProblem]
    warnings: list[str]


def validate_files(
    paths: Sequence[Path] = (),
    *,
    profiles_dirs: Sequence[Path] = (),
    playbooks_dirs: Sequence[Path] = (),
) -> list[SchemaProblem]:
    """Every problem in the given files (directories are expanded); [] means all valid."""
    return check_files(paths, profiles_dirs=profiles_dirs, playbooks_dirs=playbooks_dirs).problems


def check_files(
    paths: Sequence[Path] = (),
    *,
    profiles_dirs: Sequence[Path] = (),
    playbooks_dirs: Sequence[Path] = (),
) -> CatalogCheck:
    """Every problem in the given files (directories are expanded), and tie warnings.

    No paths means the built-in content. The files are checked as they would be used:
    profiles are resolved against the built-ins and the given directories, with the
    files themselves on top, so a broken override or an unknown var is found too.
    Nothing is contacted. Problems in the surrounding directories are reported as well.
    A path or directory that does not exist raises CatalogError (a usage problem).
    """
    builtin_named = not paths
    if builtin_named and not profiles_dirs and not playbooks_dirs:
        # The built-ins alone are checked exactly as Catalog.load reads them: a clean load
        # (from the cache when nothing changed) means no problems. Anything else is
        # checked file by file below, which finds and words every problem.
        try:
            return CatalogCheck([], Catalog.load().ties())
        except (SchemaError, CatalogError):
            pass
    problems: list[SchemaProblem] = []
    given: list[_Source] = []
    top = len(profiles_dirs) + len(playbooks_dirs) + 1
    files = files_to_validate(paths)
    for path in files:
        kind = detect_kind(None, path)
        display = f"{_DIRNAMES[kind]}/{path.name}" if builtin_named and kind else str(path)
        try:
            given.append(_load_source(path, display, top, builtin_named, None))
        except SchemaError as exc:
            problems.extend(exc.problems)
    dirs: list[tuple[Path, int, bool, Kind]] = [
        (builtin_dir("profile"), 0, True, "profile"),
        (builtin_dir("playbook"), 0, True, "playbook"),
    ]
    dirs += [(Path(d), i + 1, False, "profile") for i, d in enumerate(profiles_dirs)]
    dirs += [(Path(d), i + 1, False, "playbook") for i, d in enumerate(playbooks_dirs)]
    around, around_problems = _load_dirs(dirs, {p.resolve() for p in files})
    problems.extend(around_problems)
    if problems:
        # Resolving now would only add echoes ("extends unknown profile") of a file that
        # failed to load; those problems come first.
        return CatalogCheck(_unique(problems), [])
    try:
        catalog = Catalog.from_sources([*around, *given])
    except SchemaError as exc:
        problems.extend(exc.problems)
    except CatalogFileError as exc:
        problems.append(SchemaProblem(exc.file, None, None, "", str(exc)))
    else:
        return CatalogCheck([], catalog.ties())
    return CatalogCheck(_unique(problems), [])
