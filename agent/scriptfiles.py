"""``run_file:``: a step's script kept in a file beside its profile.

A long script reads better as a ``.sh`` (or ``.ps1``) file than as a YAML block: an editor
highlights it and shellcheck can check it. :func:`inline_run_files` runs once per profile
file, before the schema sees it: each step entry with ``run_file: NAME`` gets the file's
text as its ``run:``. From then on the step is like any other: an override in a derived
profile replaces the text like an inline ``run:``, ``profiles show`` and ``plan`` show it,
and the plan hash covers it (so editing the file is a plan change to ``run --resume``).

The name is resolved against the directory of the YAML file and must stay inside it: no
absolute path, no ``..``, no symbolic link leading out; only a regular file, at most
:data:`~agent.limits.MAX_SCRIPT_BYTES`, UTF-8. A problem names the YAML file and the line of
the ``run_file:`` key. The files read are returned with their sha256, for whoever caches
or records what a catalog was built from.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from agent.errors import SchemaProblem
from agent.limits import MAX_SCRIPT_BYTES
from agent.safefiles import NotRegularFile, TooLarge, read_regular
from agent.yamlload import YamlDocument

__all__ = ["PLACEHOLDER", "InlinedScripts", "ScriptFile", "inline_run_files"]

#: The ``run:`` of an entry whose run_file could not be read: a valid script, so the
#: schema does not add a second "run is missing" to the problem already reported.
PLACEHOLDER = ":"


@dataclass(frozen=True)
class ScriptFile:
    """One script file a profile names, as it was read."""

    path: Path  # resolved, inside the profile's directory
    sha256: str


@dataclass(frozen=True)
class InlinedScripts:
    """A profile's document with each ``run_file`` read into ``run``, and what that took."""

    doc: YamlDocument
    files: tuple[ScriptFile, ...]
    problems: tuple[SchemaProblem, ...]


class _Refused(Exception):
    """A run_file value that cannot be used; the message says why (one line)."""


def inline_run_files(doc: YamlDocument, directory: Path) -> InlinedScripts:
    """``doc`` (a copy where needed) with every step's ``run_file`` read into ``run``.

    ``directory`` is where the YAML file lives. ``doc`` itself is left as it is (YAML
    aliases share one dict between two steps). A ``run_file`` that was read stays in its
    entry (the schema knows the field); one that was refused is removed, and reported.
    In the copy's node tree each such ``run`` sits where the ``run_file`` value is, so a
    problem found later in the script (an unknown var) is located at that line.
    """
    data = doc.data
    phases = data.get("phases") if isinstance(data, dict) else None
    if not isinstance(phases, dict):
        return InlinedScripts(doc, (), ())
    files: dict[Path, ScriptFile] = {}
    problems: list[SchemaProblem] = []
    read: list[tuple[Any, int]] = []  # (phase, index) of each entry given a script
    new_phases: dict[Any, Any] = {}
    for phase, entries in phases.items():
        if not isinstance(entries, list):
            new_phases[phase] = entries
            continue
        new_entries = []
        for i, entry in enumerate(entries):
            # A drop entry has no script: the schema reports a run_file there as unknown.
            if isinstance(entry, dict) and "run_file" in entry and "drop" not in entry:
                loc = ("phases", phase, i, "run_file")
                entry = dict(entry)
                try:
                    if "run" in entry:
                        raise _Refused("give run or run_file, not both")
                    script = _read(entry["run_file"], directory)
                except _Refused as exc:
                    problems.append(doc.problem(loc, str(exc), key=True))
                    del entry["run_file"]  # reported here: the schema must not echo it
                    entry.setdefault("run", PLACEHOLDER)
                else:
                    files.setdefault(script.path, script.file)
                    entry["run"] = script.text
                    read.append((phase, i))
            new_entries.append(entry)
        new_phases[phase] = new_entries
    new_doc = YamlDocument(doc.file, {**data, "phases": new_phases}, _with_run_keys(doc, read))
    return InlinedScripts(new_doc, tuple(files.values()), tuple(problems))


def _with_run_keys(doc: YamlDocument, entries: list[tuple[Any, int]]) -> yaml.Node | None:
    """``doc.root`` with a ``run`` key beside each entry's ``run_file`` (nodes copied on
    the way down, never changed: the original tree stays the file's)."""
    if not entries:
        return doc.root
    root = _copied(doc.root)
    for phase, index in entries:
        node: yaml.Node | None = root
        for part in ("phases", phase, index):
            node = _copied_child(node, part)
        key = doc.node_at(("phases", phase, index, "run_file"), key=True)
        value = doc.node_at(("phases", phase, index, "run_file"))
        if isinstance(node, yaml.MappingNode) and key is not None and value is not None:
            run_key = yaml.ScalarNode("tag:yaml.org,2002:str", "run", key.start_mark, key.end_mark)
            node.value.append((run_key, value))
    return root


def _copied(node: yaml.Node | None) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        return node
    twin = copy.copy(node)
    twin.value = list(node.value)
    return twin


def _copied_child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    """Replace ``node``'s child ``part`` with a copy (in ``node``, itself a copy); return it."""
    if isinstance(node, yaml.MappingNode):
        for i, (k, v) in enumerate(node.value):
            if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                twin = _copied(v)
                node.value[i] = (k, twin)
                return twin
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        twin = _copied(node.value[part])
        node.value[part] = twin
        return twin
    return None


@dataclass(frozen=True)
class _Script:
    path: Path
    text: str
    file: ScriptFile


def _read(value: Any, directory: Path) -> _Script:
    """The text of the file ``value`` names below ``directory``; _Refused says why not."""
    if not isinstance(value, str) or not value.strip():
        raise _Refused("expected a file name relative to the profile's directory (a string)")
    name = PurePosixPath(value)
    if name.is_absolute() or "\\" in value:
        raise _Refused(f"{value}: must be a path relative to the profile's directory")
    if ".." in name.parts:
        raise _Refused(f"{value}: may not contain .. (the file must be beside the profile)")
    base = directory.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        # Only a symbolic link gets here: the name itself has no "..".
        raise _Refused(f"{value}: leads outside the profile's directory (a symbolic link)")
    try:
        raw = read_regular(path, MAX_SCRIPT_BYTES)
    except FileNotFoundError:
        raise _Refused(f"{value}: no such file in {directory}") from None
    except (NotRegularFile, TooLarge) as exc:
        raise _Refused(f"{value}: {exc}") from None
    except OSError as exc:
        raise _Refused(f"{value}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(f"{value}: not UTF-8 text (byte {exc.start + 1})") from None
    return _Script(path, text, ScriptFile(path, hashlib.sha256(raw).hexdigest()))
