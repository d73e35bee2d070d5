"""Every PowerShell text imageprep can send parses with tree-sitter's PowerShell grammar.

The test double (tests/winrm_server) runs a subset of PowerShell and may forgive syntax
that powershell.exe rejects; an independent grammar catches that. The grammar comes from
``tree-sitter-language-pack`` 0.13.0 (pinned in the test extra: later versions download
grammars at run time). It rejects upper-case numeric multipliers (``1MB``), which
PowerShell accepts, so those are lowered before parsing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from tree_sitter_language_pack import get_parser

from agent.catalog import Catalog
from agent.executors.winrm import scripts
from agent.facts_windows import _GATHER_SCRIPT, facts_from_values
from agent.plan import build_plan
from agent.windows_logs import log_scripts

_PARSER = get_parser("powershell")
_MULTIPLIER = re.compile(r"\b(\d+)(KB|MB|GB|TB|PB)\b")


def _errors(text: str) -> list[str]:
    """Where the grammar found errors or missing tokens, as 'line:col: text'."""
    source = _MULTIPLIER.sub(lambda m: m[1] + m[2].lower(), text).encode("utf-8")
    tree = _PARSER.parse(source)
    found: list[str] = []

    def walk(node: Any) -> None:
        if node.type == "ERROR" or node.is_missing:
            row, col = node.start_point
            line = source.splitlines()[row].decode() if row < len(source.splitlines()) else ""
            found.append(f"{row + 1}:{col + 1}: {line.strip()[:100]}")
            return
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return found


def _every_var_set(defaults: dict[str, Any]) -> dict[str, str]:
    """A non-default value for every var, as --var would give it (quotes included)."""
    out: dict[str, str] = {}
    for key, value in defaults.items():
        if isinstance(value, bool):
            out[key] = "false" if value else "true"
        elif isinstance(value, int):
            out[key] = str(value + 7)
        elif isinstance(value, list):
            out[key] = "Web-Server,it's-a-name"
        else:
            out[key] = "C:\\it's $(here) `n.xml"
    return out


_FACTS = facts_from_values(
    {"caption": "Microsoft Windows Server 2022 Datacenter", "build": "20348", "ubr": "1"}
).as_dict()


def _profile_texts() -> Iterator[tuple[str, str]]:
    profile = Catalog.load().get_profile("windows-server")
    for label, overrides in (("defaults", {}), ("every var", _every_var_set(profile.vars))):
        plan = build_plan(  # noqa: S604  shell= is the step language, not a subprocess
            profile_id=profile.id,
            profile_file=str(profile.source_file),
            profile_phases=profile.phases,
            profile_vars=profile.vars,
            backup_paths=(),
            playbook_name="every-phase",
            playbook_file="(test)",
            playbook_phases=list(profile.phases),
            requires_backup=False,
            facts=_FACTS,
            var_overrides=overrides,
            shell="powershell",
        )
        for step in plan.steps:
            yield f"{step.key} ({label})", scripts.PREAMBLE + step.command
            if step.resume_check:
                yield f"{step.key} resume_check ({label})", step.resume_check


def _tool_texts() -> Iterator[tuple[str, str]]:
    yield "facts script", _GATHER_SCRIPT
    yield "run-from-stdin bootstrap", scripts.run_from_stdin("Write-Output 1")[0]
    yield "write-from-stdin bootstrap", scripts.write_from_stdin("C:\\it's.txt", b"x")[0]
    yield "read-file script", scripts.read_file("C:\\it's.txt")
    for name, text in log_scripts():
        yield f"log script {name}", text


_TEXTS = dict([*_profile_texts(), *_tool_texts()])


def test_the_grammar_rejects_broken_powershell() -> None:
    """The parser used here does report errors (so the tests below can fail)."""
    assert _errors("if ($x -eq 1 { Write-Output 'a' }\n")
    assert _errors("$a = @(1, 2\n")


@pytest.mark.parametrize("label", sorted(_TEXTS))
def test_every_script_parses_without_errors(label: str) -> None:
    """Each step (defaults and every var set), facts, bootstrap and log script parses."""
    assert _errors(_TEXTS[label]) == []


@pytest.mark.parametrize("label", sorted(_TEXTS))
def test_no_script_assumes_c_windows(label: str) -> None:
    """Windows may live elsewhere: every script finds it through $env:SystemRoot."""
    assert "c:\\windows" not in _TEXTS[label].casefold()
