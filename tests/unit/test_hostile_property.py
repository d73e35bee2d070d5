"""Generated hostile input: YAML documents for `validate`, journals for `run --resume`.

The corpus (test_hostile_inputs.py) holds the cases someone thought of; these feed the
CLI what hypothesis makes up: profile-shaped documents with values of every type,
arbitrary YAML and plain text for ``validate``; run folders whose journal lines were
replaced, dropped, duplicated or garbled for ``--resume``. Whatever comes in, the CLI
ends with a documented code and no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main
from agent.journal import EVENTS
from agent.logging import reset_logging
from tests.unit.hostile_harness import bounded
from tests.unit.hostile_peers import closed_port
from tests.unit.test_resume_cli import BACKUP, make_run

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- values and documents ------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["abort", "debian", "true", "/etc/ssh", ">=12,<14", "vars.x == 1", ""])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
STEP_KEYS = [
    "name", "description", "run", "become", "when", "timeout", "retries", "retry_delay",
    "ok_exit_codes", "on_failure", "destructive", "expect_disconnect", "no_log", "tags",
    "enabled", "resume_check", "override", "drop", "before", "after", "bogus",
]  # fmt: skip
steps = st.dictionaries(st.sampled_from(STEP_KEYS), json_values, max_size=8)
profiles = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["hostile", "debian", "Bad Id", ""]) | json_values,
        "description": st.sampled_from(["A generated profile"]) | json_values,
    },
    optional={
        "match": st.fixed_dictionaries({}, optional={"ids": json_values, "version": json_values}),
        "extends": st.sampled_from(["debian", "linux-base", "hostile", "nope"]) | json_values,
        "vars": st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        "phases": st.dictionaries(
            st.sampled_from(["preflight", "cleanup", "backup", "verify", "x y"]),
            st.lists(steps, max_size=3) | json_values,
            max_size=3,
        ),
        "backup_paths": json_values,
        "platform": json_values,
    },
)
playbooks = st.fixed_dictionaries(
    {"name": json_values, "description": json_values},
    optional={"phases": json_values, "requires_backup": json_values},
)


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


documents = (
    profiles.map(_dump)
    | playbooks.map(_dump)
    | json_values.map(_dump)
    | st.text(max_size=300)
    | st.text(alphabet="{}[]&*!|>-:,#'\"\n\t ?%@`abc123", max_size=200)
)


def _invoke(argv: list[str], root: Path) -> Any:
    old = Path.cwd()
    os.chdir(root)
    try:
        with bounded(60):
            return CliRunner().invoke(main, argv, catch_exceptions=True)
    finally:
        os.chdir(old)
        reset_logging()


@SETTINGS
@given(text=documents)
def test_validate_takes_any_document_with_exit_0_or_2(text: str) -> None:
    """`validate FILE` of a generated document ends 0 (valid) or 2 (one line per problem)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        result = _invoke(["validate", str(path)], Path(folder))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        problems = result.stderr.splitlines()[:-1]
        assert problems, result.stderr
        # A document that shadows a built-in (id: debian) can break the profiles that
        # extend it: those lines name the built-in's file and, in parentheses, this one.
        assert all(str(path) in line for line in problems), result.stderr


# -- journals ------------------------------------------------------------------------------

# The envelope is mostly well formed, so that generated events get past the first checks
# and reach the rules about what each event may say.
events = st.fixed_dictionaries(
    {
        "v": st.just(1) | st.just(1) | json_values,
        "seq": st.integers(min_value=-2, max_value=60) | json_values,
        "at": st.just("2026-01-01T00:00:00Z") | json_values,
        "session": st.integers(min_value=0, max_value=3) | json_values,
        "event": st.sampled_from(EVENTS) | st.sampled_from(EVENTS) | json_values,
    },
    optional={
        "step": st.sampled_from(["work/clean", "work/wipe", "nope/x"]) | json_values,
        "result": json_values,
        "record": json_values,
        "reason": json_values,
        "attempt": json_values,
        "destructive": json_values,
        "status": json_values,
    },
)
lines = (
    events.map(lambda e: json.dumps(e))
    | json_values.map(lambda v: json.dumps(v))
    | st.text(max_size=60)
)
HEADER_KEYS = ["run_id", "target", "plan_hash", "request", "profile", "playbook", "facts", "v"]
edits = st.lists(
    st.one_of(
        st.tuples(st.just("append"), lines),
        st.tuples(st.just("insert"), st.integers(0, 10), lines),
        st.tuples(st.just("drop"), st.integers(0, 10)),
        st.tuples(st.just("duplicate"), st.integers(0, 10)),
        st.tuples(st.just("header-drop"), st.sampled_from(HEADER_KEYS)),
        st.tuples(st.just("header-set"), st.sampled_from(HEADER_KEYS), json_values),
        st.tuples(st.just("truncate"), st.integers(0, 400)),
    ),
    min_size=1,
    max_size=4,
)


_TEMPLATE: list[tempfile.TemporaryDirectory[str]] = []


def _template() -> Path:
    """One real run folder (and its catalog) per session; each example forges a copy."""
    if not _TEMPLATE:
        _TEMPLATE.append(tempfile.TemporaryDirectory())
        make_run(Path(_TEMPLATE[0].name), BACKUP)
    return Path(_TEMPLATE[0].name)


def _forge(journal: Path, changes: list[tuple[Any, ...]]) -> None:
    text = journal.read_text(encoding="utf-8").splitlines()
    cut: int | None = None
    for change in changes:
        kind = change[0]
        if kind == "truncate":
            cut = change[1]
        elif kind == "append":
            text.append(change[1])
        elif kind == "insert":
            text.insert(min(change[1], len(text)), change[2])
        elif kind == "drop" and text:
            text.pop(min(change[1], len(text) - 1))
        elif kind == "duplicate" and text:
            text.append(text[min(change[1], len(text) - 1)])
        elif kind in ("header-drop", "header-set") and text:
            try:
                header = json.loads(text[0])
            except ValueError:
                continue
            if isinstance(header, dict):
                if kind == "header-drop":
                    header.pop(change[1], None)
                else:
                    header[change[1]] = change[2]
                text[0] = json.dumps(header)
    joined = "\n".join(text) + "\n"
    if cut is not None:
        joined = joined[:cut]
    journal.write_text(joined, encoding="utf-8", errors="surrogatepass")


@SETTINGS
@given(changes=edits)
def test_resume_takes_any_forged_journal_without_a_traceback(
    changes: list[tuple[Any, ...]],
) -> None:
    """`run --resume` of a forged journal: 2 (refused) or, for a journal that still makes
    sense, the resume goes on to a closed 127.0.0.1 port: 4 (cannot connect) or 6 (a
    destructive step's outcome is unknown). 0 needs a target, 1 is a bug: never."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        run_dir = root / "run"
        shutil.copytree(_template() / "run", run_dir)
        journal = run_dir / "journal.jsonl"
        header = json.loads(journal.read_text().splitlines()[0])
        header["target"] = f"ssh://azureuser@127.0.0.1:{closed_port()}"
        rest = journal.read_text().splitlines()[1:]
        journal.write_text("\n".join([json.dumps(header), *rest]) + "\n")
        _forge(journal, changes)
        argv = ["run", "--resume", str(run_dir), "--log-format", "text"]
        argv += ["--known-hosts", str(root / "known_hosts"), "--connect-timeout", "2"]
        result = _invoke(argv, root)
        final = None
        if result.exit_code in (4, 6) and (run_dir / "result.json").is_file():
            final = json.loads((run_dir / "result.json").read_text())
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code in (2, 4, 6), result.output
    if result.exit_code == 2:
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    if final is not None and result.exit_code == 4:
        assert final["status"] == "failed"
