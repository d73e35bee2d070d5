"""The import graph of agent/: every module sits in a layer and imports none above its own.

The layers, bottom first. A module may import from its own layer and the ones below it,
never from a layer above: the run's data flow (CLI -> targets/catalog -> executor -> facts
-> plan -> engine -> report, DESIGN.md) read as "who uses whom". The run folder's writer
(report.py) and the schema are used by every stage, so they sit low; facts are gathered
before a profile is chosen, so the catalog sits above them, with the plan;
the runner, which drives every stage, and the CLI, which drives the runner, sit on top.

0 foundation   errors, limits, text helpers, secrets and redaction, targets, results,
               exit codes, YAML loading, the console and logging set-up, the target lock,
               the read log and the catalog cache, Ctrl-C for worker threads
1 definitions  expressions, the catalog's records, the profile/playbook schema, the run folder
2 transport    the executors (SSH, WinRM) and the disk tools
3 facts        what a target is, gathered over an executor
4 plan         the catalog, and the plan built from it and the facts (and offline planning)
5 engine       running a plan: the engine, backups, the Windows helpers around a run
6 record       what a run records: the journal, the recorder, a fleet's fleet.json
7 after        what comes after or around a session: capture and platforms, resume
8 runs         whole runs: the runner, the boot test, upload, VHD conversion
9 front end    the CLI, its console progress, JUnit output, fleets (many runs at once)

A subpackage (executors, backups, disks, platforms, cli) counts as one module; imports inside
it are its own business. Imports under ``if TYPE_CHECKING:`` are not run and do not
count. A new module must be given a layer here; that is the point of this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "agent"

LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(names.split())
    for names in (
        "agent errors limits excerpt extras secrets redaction safefiles outcome results targets "
        "yamlload console logging lock sshconfig varfile inventory result_schema provenance "
        "readlog catalog_cache interrupts upload_progress background atomicwrite startup",
        "expressions records schema schemas scriptfiles report vmlock",
        "executors disks",
        "facts facts_windows",
        "catalog plan planning",
        "engine backups windows_logs windows_power windows_oobe",
        "journal recorder fleet_record",
        "capture platforms resume windows_run",
        "runner boottest upload vhd",
        "cli api progress junit fleet fleet_plan __main__",
    )
)


def _unit(dotted: str) -> str:
    """``agent.executors.ssh.exec`` -> ``executors``; ``agent.plan`` -> ``plan``."""
    parts = dotted.split(".")
    if len(parts) == 1:
        return "agent"
    return parts[1]


def _layer(unit: str) -> int:
    for index, names in enumerate(LAYERS):
        if unit in names:
            return index
    raise AssertionError(f"agent.{unit} has no layer in {__name__}.LAYERS: give it one")


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(AGENT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every run-time ``agent`` import, at any depth."""
    found: list[tuple[int, str]] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "agent":
                found += [(node.lineno, f"agent.{alias.name}") for alias in node.names]
            elif node.module.startswith("agent."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("agent.")]
        stack.extend(ast.iter_child_nodes(node))
    return found


def _edges() -> list[tuple[str, int, str, str]]:
    """(file, line, importing unit, imported unit) across agent/."""
    edges = []
    for path in sorted(AGENT.rglob("*.py")):
        unit = _unit(_module_of(path))
        for line, target in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            imported = _unit(target)
            if imported == "__version__":
                imported = "agent"
            if imported != unit:
                edges.append((str(path.relative_to(AGENT.parent)), line, unit, imported))
    return edges


def test_every_module_has_a_layer() -> None:
    """A module missing from LAYERS fails here, so the order stays complete."""
    units = {_unit(_module_of(path)) for path in AGENT.rglob("*.py")}
    assert sorted(u for u in units if not any(u in names for names in LAYERS)) == []


def test_no_module_imports_one_above_it() -> None:
    """Every import points to the importer's layer or below (file:line on failure)."""
    upward = [
        f"{file}:{line}: agent.{unit} (layer {_layer(unit)}) imports agent.{imported} "
        f"(layer {_layer(imported)})"
        for file, line, unit, imported in _edges()
        if _layer(imported) > _layer(unit)
    ]
    assert upward == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from agent.runner import execute\n", ["agent.runner"]),
        ("from agent import errors\n", ["agent.errors"]),
        ("def f():\n    import agent.plan\n", ["agent.plan"]),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import agent.runner\n", []),
    ],
)
def test_the_scan_sees_function_level_imports_and_skips_type_checking(
    source: str, expected: list[str]
) -> None:
    """The scanner is not blind: local imports count, type-only ones do not."""
    assert [name for _, name in _imports(ast.parse(source))] == expected
