"""agent.api embedded in a program that has its own logging, against a real target.

The program (embedding_app.py, run as a subprocess so that its set-up is its own) sets
up logging, structlog, context variables, warnings filters and signal handlers, then
calls ``api.plan`` and ``api.run`` (generalize, archive backup) and reports what changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.targets.nspawn import NspawnTarget

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("embedding_app.py")


def _embed(target: NspawnTarget, tmp_path: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            str(APP),
            f"ssh://{target.user}@{target.host}:{target.port}",
            str(target.key_path),
            str(target.known_hosts_path),
            str(tmp_path / "run"),
            str(tmp_path / "backups"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def test_an_embedding_programs_logging_is_untouched_by_plan_and_run(
    target: NspawnTarget, tmp_path: Path
) -> None:
    """api.plan and api.run leave handlers, levels, structlog, context, warnings, signals."""
    report = _embed(target, tmp_path)
    assert report["differences"] == []
    assert report["exit_code"] == 0, report
    assert report["status"] == "succeeded"
    assert report["document_run_id"] == report["run_id"]
    assert ["deprovision/waagent-deprovision", "ok"] in report["steps"]
    assert "deprovision/waagent-deprovision" in report["plan_steps"]
    # imageprep's events went through the program's own structlog processors and handler.
    ends = [json.loads(m) for m in report["messages"] if '"run.end"' in m]
    assert len(ends) == 1
    assert ends[0]["app"] == "embedding-app"
    assert ends[0]["request_id"] == "req-42"
    assert ends[0]["run_id"] == report["run_id"]
    assert not (Path(report["run_dir"]) / "run.log.jsonl").exists()
    assert (Path(report["run_dir"]) / "result.json").exists()
