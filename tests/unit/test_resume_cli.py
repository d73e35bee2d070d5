"""`imageprep run --resume RUN_DIR` refusals: each one line, its exit code, nothing touched.

The journals are made the way a run makes them (runner header, Journal events). The
targets are TEST-NET addresses nothing answers on: a refusal that contacted the target
would end in a connection failure (exit 4) instead of its own code, and the run folder
must be byte-for-byte what it was.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agent.backups.base import BackupRecord
from agent.catalog import Catalog
from agent.cli import main
from agent.journal import JOURNAL_FILE, Journal
from agent.outcome import ExitCode
from agent.plan import Selection, plan_for
from agent.runner import RunRequest, _header
from agent.targets import parse_target

TARGET = "ssh://azureuser@192.0.2.20:22"
FACTS: dict[str, Any] = {"os": {"id": "debian", "version_id": "12"}, "arch": "x86_64"}


class RecordedFacts:
    def as_dict(self) -> dict[str, Any]:
        return FACTS


def write_catalog(root: Path) -> tuple[Path, Path]:
    profiles, playbooks = root / "profiles", root / "playbooks"
    profiles.mkdir(parents=True)
    playbooks.mkdir(parents=True)
    (profiles / "probe.yaml").write_text(
        textwrap.dedent(
            """\
            id: probe
            description: Steps made by a test
            match: {ids: [probe-never-matches]}
            phases:
              work:
                - name: clean
                  description: Clean up
                  run: "true"
                - name: wipe
                  description: Wipe
                  destructive: true
                  run: "true"
            """
        )
    )
    (playbooks / "probe.yaml").write_text(
        "name: probe\ndescription: Probe\nphases: [backup, work]\nrequires_backup: true\n"
    )
    return profiles, playbooks


def make_run(root: Path, *events: tuple[str, dict[str, Any]]) -> Path:
    """A run folder whose journal has the real header and then ``events``."""
    profiles, playbooks = write_catalog(root)
    catalog = Catalog.load(profiles_dirs=(profiles,), playbooks_dirs=(playbooks,))
    plan = plan_for(
        catalog,
        playbook_name="probe",
        profile_id="probe",
        facts=FACTS,
        var_overrides={},
        selection=Selection(),
    )
    request = RunRequest(
        target=parse_target(TARGET),
        playbook="probe",
        profile="probe",
        backup_spec=f"archive:{root / 'backups'}",
        profiles_dirs=(profiles,),
        playbooks_dirs=(playbooks,),
    )
    run_dir = root / "run"
    run_dir.mkdir()
    journal = Journal.create(run_dir)
    journal.run_started(_header(request, "r1", catalog, plan, RecordedFacts()))  # type: ignore[arg-type]
    for event, fields in events:
        journal.append(event, **fields)
    journal.close()
    (run_dir / "result.json").write_text('{"status": "running"}\n')
    return run_dir


BACKUP = (
    "backup_recorded",
    {
        "record": BackupRecord(
            provider="archive",
            reference="/backups/b.tar.gz",
            created_at="2026-01-01T00:00:00Z",
            duration=1.0,
            restore_hint="tar -xzpf /backups/b.tar.gz -C /",
        ).to_dict()
    },
)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def resume(run_dir: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        main, ["run", "--resume", str(run_dir), *extra, "--log-format", "json"]
    )


def error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("imageprep:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_missing_run_dir_is_exit_2(tmp_path: Path) -> None:
    """A RUN_DIR that does not exist: one line naming it, exit 2."""
    result = resume(tmp_path / "nope")
    assert result.exit_code == ExitCode.USAGE
    assert f"--resume {tmp_path / 'nope'}: no such directory" in error_line(result)


def test_folder_without_journal_is_exit_2(tmp_path: Path) -> None:
    """A folder that is not a run folder is refused."""
    result = resume(tmp_path)
    assert result.exit_code == ExitCode.USAGE
    assert "not an imageprep run folder" in error_line(result)


def test_run_dir_of_another_target_is_exit_2(tmp_path: Path) -> None:
    """--target names another VM than the journal: refused before any contact."""
    run_dir = make_run(tmp_path, BACKUP)
    before = snapshot(run_dir)
    result = resume(run_dir, "--target", "ssh://azureuser@192.0.2.99:22")
    assert result.exit_code == ExitCode.USAGE
    assert f"is against {TARGET}, not ssh://azureuser@192.0.2.99:22" in error_line(result)
    assert snapshot(run_dir) == before


def test_corrupted_journal_line_is_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    """A damaged line is reported as journal.jsonl:LINE."""
    run_dir = make_run(tmp_path, BACKUP, ("step_started", {"step": "work/clean"}))
    path = run_dir / JOURNAL_FILE
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"
    path.write_text("".join(lines))
    before = snapshot(run_dir)
    result = resume(run_dir)
    assert result.exit_code == ExitCode.USAGE
    assert f"{path}:2: not a JSON object" in error_line(result)
    assert snapshot(run_dir) == before


def test_finished_run_is_exit_2(tmp_path: Path) -> None:
    """A run that already succeeded has nothing to resume."""
    done = ("run_finished", {"status": "succeeded", "exit_code": 0, "message": "ok"})
    run_dir = make_run(tmp_path, BACKUP, done)
    before = snapshot(run_dir)
    result = resume(run_dir)
    assert result.exit_code == ExitCode.USAGE
    assert "already finished successfully" in error_line(result)
    assert snapshot(run_dir) == before


def test_changed_profile_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    """The plan rebuilt today differs: refused, naming the profile file that changed."""
    run_dir = make_run(tmp_path, BACKUP)
    profile = tmp_path / "profiles" / "probe.yaml"
    profile.write_text(profile.read_text().replace('run: "true"', 'run: "echo changed"', 1))
    result = resume(run_dir)
    assert result.exit_code == ExitCode.USAGE
    line = error_line(result)
    assert "differs from the one run r1 was started with" in line
    assert str(profile.resolve()) in line


def test_unchecked_destructive_step_in_doubt_is_exit_6(tmp_path: Path) -> None:
    """A destructive step started and never reported, without resume_check: restore."""
    started = ("step_started", {"step": "work/wipe", "attempt": 1, "destructive": True})
    run_dir = make_run(tmp_path, BACKUP, started)
    before = snapshot(run_dir)
    result = resume(run_dir)
    assert result.exit_code == ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN
    line = error_line(result)
    assert "work/wipe started in session 1" in line
    assert "tar -xzpf /backups/b.tar.gz -C /" in line
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(
    "flag",
    [
        ["--backup", "archive:/tmp/x"],
        ["--no-backup"],
        ["--var", "a=b"],
        ["--only", "x"],
        ["--run-dir", "/tmp/x"],
        ["--playbook", "check"],
    ],
)
def test_plan_options_are_refused_with_resume(tmp_path: Path, flag: list[str]) -> None:
    """--resume takes the plan options from the journal; giving one is a usage error."""
    result = resume(tmp_path, *flag)
    assert result.exit_code == ExitCode.USAGE
    assert f"{flag[0]} cannot be given with it" in error_line(result)


@pytest.mark.parametrize("flag", [["--playbook", "generalize"], ["--profile", "auto"]])
def test_plan_option_at_its_default_value_is_refused_with_resume(
    tmp_path: Path, flag: list[str]
) -> None:
    """Given on the command line, a plan option is refused even at its default value."""
    result = resume(tmp_path, *flag)
    assert result.exit_code == ExitCode.USAGE
    assert f"{flag[0]} cannot be given with it" in error_line(result)


def test_new_run_refuses_a_run_dir_holding_a_journal(tmp_path: Path) -> None:
    """`run --run-dir DIR` on an earlier run's folder: refused, the folder untouched."""
    run_dir = make_run(tmp_path, BACKUP)
    before = snapshot(run_dir)
    result = CliRunner().invoke(
        main,
        ["run", "--target", TARGET, "--no-backup", "--reason", "t", "--run-dir", str(run_dir)],
    )
    assert result.exit_code == ExitCode.USAGE
    assert "imageprep run --resume" in error_line(result)
    assert snapshot(run_dir) == before
