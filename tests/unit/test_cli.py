"""The CLI in process: help, exit codes and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.outcome import ExitCode


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["plan"],
        ["check"],
        ["validate"],
        ["profiles", "list"],
        ["profiles", "show"],
        ["playbooks", "list"],
    ],
)
def test_every_command_has_help(cli: CliRunner, command: list[str]) -> None:
    """--help works on every command and exits 0."""
    result = cli.invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_version(cli: CliRunner) -> None:
    """--version prints the program name and version."""
    result = cli.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("imageprep, version ")


def test_validate_builtins_ok(cli: CliRunner) -> None:
    """The built-in profiles and playbooks validate."""
    result = cli.invoke(main, ["validate"])
    assert result.exit_code == 0, result.output


def test_validate_bad_file_exit_2_with_location(cli: CliRunner, tmp_path: Path) -> None:
    """A YAML error is reported as file:line:col and exits 2."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\ndescription: d\nphases: [preflight\nrequires_backup: false\n")
    result = cli.invoke(main, ["validate", str(bad)])
    assert result.exit_code == ExitCode.USAGE
    assert f"{bad}:" in result.output


def test_plan_without_target_needs_no_connection(cli: CliRunner) -> None:
    """plan --profile ID prints the steps and exact commands without a target."""
    result = cli.invoke(main, ["plan", "--profile", "debian"])
    assert result.exit_code == 0, result.output
    assert "waagent -force -deprovision+user" in result.output


def test_plan_json_is_machine_readable(cli: CliRunner) -> None:
    """plan --format json emits the plan as JSON."""
    result = cli.invoke(main, ["plan", "--profile", "debian", "--format", "json"])
    plan = json.loads(result.output)
    assert plan["profile"]["id"] == "debian"
    assert any(s["destructive"] for s in plan["steps"])


def test_plan_auto_profile_without_target_is_usage_error(cli: CliRunner) -> None:
    """--profile auto cannot work without a target; one line, exit 2."""
    result = cli.invoke(main, ["plan"])
    assert result.exit_code == ExitCode.USAGE
    assert "--profile auto needs --target" in result.output


def test_unknown_profile_lists_known(cli: CliRunner) -> None:
    """An unknown profile id names the known ones."""
    result = cli.invoke(main, ["plan", "--profile", "gentoo"])
    assert result.exit_code == ExitCode.USAGE
    assert "debian" in result.output


def test_run_without_target_is_usage_error(cli: CliRunner) -> None:
    """run without --target exits 2 with one line."""
    result = cli.invoke(main, ["run", "--log-format", "json"])
    assert result.exit_code == ExitCode.USAGE
    assert "--target" in result.output
    assert "Traceback" not in result.output


def test_run_with_password_in_url_is_refused(cli: CliRunner) -> None:
    """A password in the target URL is refused before anything happens."""
    result = cli.invoke(main, ["run", "--target", "ssh://u:pw@h", "--no-backup", "--reason", "x"])
    assert result.exit_code == ExitCode.USAGE


def test_no_backup_needs_a_reason(cli: CliRunner) -> None:
    """--no-backup without --reason is refused."""
    result = cli.invoke(main, ["run", "--target", "ssh://u@h", "--no-backup"])
    assert result.exit_code == ExitCode.USAGE
    assert "--reason" in result.output


def test_missing_password_env_is_named(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """--password-env naming an unset variable says which one."""
    monkeypatch.delenv("IMAGEPREP_TEST_UNSET", raising=False)
    result = cli.invoke(
        main,
        [
            "run",
            "--target",
            "ssh://u@h",
            "--password-env",
            "IMAGEPREP_TEST_UNSET",
            "--no-backup",
            "--reason",
            "x",
        ],
    )
    assert result.exit_code == ExitCode.USAGE
    assert "IMAGEPREP_TEST_UNSET" in result.output


def test_run_without_backup_writes_report_and_exits_2(cli: CliRunner, tmp_path: Path) -> None:
    """generalize without --backup is refused before connecting; result.json says why."""
    run_dir = tmp_path / "run"
    result = cli.invoke(
        main,
        [
            "run",
            "--target",
            "ssh://u@127.0.0.1:1",
            "--run-dir",
            str(run_dir),
            "--log-format",
            "json",
        ],
    )
    assert result.exit_code == ExitCode.USAGE
    report = json.loads((run_dir / "result.json").read_text())
    assert report["exit_code"] == ExitCode.USAGE
    assert "needs a backup" in report["message"]


def test_unknown_var_is_refused(cli: CliRunner) -> None:
    """--var naming no profile variable exits 2 and lists the known ones."""
    result = cli.invoke(main, ["plan", "--profile", "debian", "--var", "nope=1"])
    assert result.exit_code == ExitCode.USAGE
    assert "nope" in result.output


def test_profiles_show_names_the_winning_file(cli: CliRunner) -> None:
    """profiles show says which file defines the profile."""
    result = cli.invoke(main, ["profiles", "show", "debian"])
    assert result.exit_code == 0
    assert "distro_profiles/debian.yaml" in result.output


def test_user_profile_overrides_builtin_and_is_reported(cli: CliRunner, tmp_path: Path) -> None:
    """A user file with a built-in id wins and profiles show says it shadows the built-in."""
    user_dir = tmp_path / "profiles"
    user_dir.mkdir()
    (user_dir / "debian.yaml").write_text(
        "id: debian\ndescription: Our Debian\nextends: debian\n"
        "match: {ids: [debian], version: '>=12'}\nphases: {}\n"
    )
    result = cli.invoke(main, ["profiles", "show", "debian", "--profiles-dir", str(user_dir)])
    assert result.exit_code == 0, result.output
    assert str(user_dir / "debian.yaml") in result.output
    assert "shadows" in result.output


def test_plan_without_target_fills_vars_and_keeps_facts(cli: CliRunner) -> None:
    """Without a target, vars are rendered (as shell words) and facts stay placeholders."""
    result = cli.invoke(main, ["plan", "--profile", "debian", "--var", "deprovision_user=builder"])
    assert result.exit_code == 0, result.output
    assert "user=builder" in result.output
    assert "{{ facts.ovf_user }}" in result.output
