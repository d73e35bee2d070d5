"""What a CI log shows of a real `imageprep check`: stderr is a pipe, not a terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from agent.result_schema import ResultDocument
from agent.schemas import json_schema
from tests.integration.cli_run import IMAGEPREP, key_args, write_probe
from tests.targets.nspawn import NspawnTarget

pytestmark = pytest.mark.integration


def _check(target: NspawnTarget, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IMAGEPREP, "check", *key_args(target), "--run-dir", str(run_dir), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "NO_COLOR"},
        check=False,
    )


def test_ci_log_is_human_text_with_counted_steps(target: NspawnTarget, tmp_path: Path) -> None:
    """Without --log-format a pipe gets text lines `[n/N] phase/step`, no JSON, no colour."""
    completed = _check(target, tmp_path / "run")
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stderr.splitlines()
    # The counter is padded to the width of the total: "[1/9]", "[ 1/10]".
    assert any(re.match(r"\[ *1/\d+\] \S+ \.\.\.$", line) for line in lines), lines[:3]
    assert not any(line.startswith("{") for line in lines)
    assert "\x1b[" not in completed.stderr
    assert completed.stdout.startswith("imageprep run ")


def test_run_log_keeps_its_json_events(target: NspawnTarget, tmp_path: Path) -> None:
    """The run folder's run.log.jsonl still has one step.end event per step."""
    _check(target, tmp_path / "run")
    events = [
        json.loads(line) for line in (tmp_path / "run" / "run.log.jsonl").read_text().splitlines()
    ]
    report = json.loads((tmp_path / "run" / "result.json").read_text())
    ran = [s for s in report["steps"] if s["status"] != "not_run"]
    assert len([e for e in events if e["event"] == "step.end"]) == len(ran)


def test_quiet_prints_only_the_summary(target: NspawnTarget, tmp_path: Path) -> None:
    """-q: no step lines on stderr, the summary on stdout."""
    completed = _check(target, tmp_path / "run", "-q")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert re.search(r"\[ *1/\d+\]", completed.stderr) is None
    assert "succeeded" in completed.stdout


def test_verbose_streams_step_output(target: NspawnTarget, tmp_path: Path) -> None:
    """-v shows a step's own output lines as they come, marked with `|`."""
    probe = write_probe(
        tmp_path, "- name: talk\n  description: Say something\n  run: echo hello-from-step\n"
    )
    completed = subprocess.run(
        [IMAGEPREP, "run", *key_args(target), *probe, "--run-dir", str(tmp_path / "run"), "-v"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "    | hello-from-step" in completed.stderr.splitlines()


def test_junit_file_has_a_testcase_per_step(target: NspawnTarget, tmp_path: Path) -> None:
    """check --junit FILE writes JUnit XML with one passing testcase per preflight step."""
    junit = tmp_path / "junit.xml"
    completed = _check(target, tmp_path / "run", "--junit", str(junit))
    assert completed.returncode == 0, completed.stderr[-3000:]
    suite = ET.parse(junit).getroot()  # noqa: S314 - the XML imageprep just wrote
    report = json.loads((tmp_path / "run" / "result.json").read_text())
    assert len(list(suite.iter("testcase"))) == len(report["steps"])
    assert suite.get("failures") == "0"
    assert suite.get("errors") == "0"


def test_result_json_fits_its_published_schema(target: NspawnTarget, tmp_path: Path) -> None:
    """A real check's result.json validates against `imageprep schema result`, and the
    schema names every top-level field it has."""
    _check(target, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "result.json").read_text())
    jsonschema.validate(report, json_schema("result"))
    assert set(report) <= set(ResultDocument.model_fields)
