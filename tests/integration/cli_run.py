"""Run the installed `imageprep` as a subprocess against a disposable target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.targets.nspawn import NspawnTarget

IMAGEPREP = str(Path(sys.executable).with_name("imageprep"))


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def report(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.run_dir / "result.json").read_text())
        return loaded

    @property
    def log_text(self) -> str:
        return (self.run_dir / "run.log.jsonl").read_text()

    def step(self, key: str) -> dict[str, Any]:
        phase, name = key.split("/")
        return next(s for s in self.report["steps"] if s["phase"] == phase and s["name"] == name)


def key_args(target: NspawnTarget) -> list[str]:
    return [
        "--target",
        f"ssh://{target.user}@{target.host}:{target.port}",
        "--identity",
        str(target.key_path),
        "--known-hosts",
        str(target.known_hosts_path),
    ]


def imageprep(
    command: str,
    *args: str,
    run_dir: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> CliResult:
    """`imageprep COMMAND ARGS --run-dir RUN_DIR --log-format json`, as a pipeline would."""
    completed = subprocess.run(
        [IMAGEPREP, command, *args, "--run-dir", str(run_dir), "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr, run_dir)


def write_probe(directory: Path, steps_yaml: str) -> list[str]:
    """A user profile `probe` and playbook `probe` (phases preflight, work; no backup).

    Returns the CLI arguments that select them.
    """
    profiles = directory / "profiles"
    playbooks = directory / "playbooks"
    profiles.mkdir(parents=True, exist_ok=True)
    playbooks.mkdir(parents=True, exist_ok=True)
    (profiles / "probe.yaml").write_text(
        "id: probe\n"
        "description: Steps made by a test\n"
        "match: {ids: [probe-never-matches]}\n"
        "phases:\n"
        "  work:\n" + textwrap.indent(textwrap.dedent(steps_yaml), "    ")
    )
    (playbooks / "probe.yaml").write_text(
        "name: probe\ndescription: Run the probe steps\nphases: [work]\nrequires_backup: false\n"
    )
    return [
        "--profiles-dir",
        str(profiles),
        "--playbooks-dir",
        str(playbooks),
        "--profile",
        "probe",
        "--playbook",
        "probe",
    ]
