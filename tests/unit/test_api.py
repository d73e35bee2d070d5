"""agent.api: bad input raises the documented errors; the rest is a typed result.

Errors come before anything is written; once a run has started, its ending is a result.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent import api
from agent.errors import CatalogError, UsageError
from agent.executors.ssh import SshOptions
from agent.executors.winrm import WinRmOptions
from agent.outcome import ExitCode

# Nothing listens here: a run that gets as far as connecting fails with exit 4.
UNREACHABLE = "ssh://azureuser@127.0.0.1:9"


def test_a_bad_target_url_raises_usage_error(tmp_path: Path) -> None:
    """A URL with a password is refused before a run folder exists."""
    with pytest.raises(UsageError, match="password in the URL"):
        api.run("ssh://u:secret@host", no_backup_reason="test", run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_destructive_playbook_without_a_backup_raises(tmp_path: Path) -> None:
    """generalize with neither backup nor no_backup_reason: UsageError, nothing written."""
    with pytest.raises(UsageError, match="needs a backup first"):
        api.run(UNREACHABLE, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_backup_and_no_backup_reason_exclude_each_other(tmp_path: Path) -> None:
    """Both given: UsageError."""
    with pytest.raises(UsageError, match="exclude each other"):
        api.run(UNREACHABLE, backup=f"archive:{tmp_path}", no_backup_reason="x")


def test_an_unknown_backup_provider_raises(tmp_path: Path) -> None:
    """backup='nfs:...' names the known providers."""
    with pytest.raises(UsageError, match="unknown backup provider 'nfs'"):
        api.run(UNREACHABLE, backup="nfs:/srv", run_dir=tmp_path / "r")


def test_an_unknown_playbook_raises_catalog_error(tmp_path: Path) -> None:
    """playbook='nope': CatalogError listing the known ones."""
    with pytest.raises(CatalogError, match="unknown playbook nope"):
        api.run(UNREACHABLE, playbook="nope", no_backup_reason="x", run_dir=tmp_path / "r")


def test_resume_refuses_plan_options(tmp_path: Path) -> None:
    """resume with a playbook: UsageError naming it."""
    with pytest.raises(UsageError, match="playbook cannot be given"):
        api.run(UNREACHABLE, resume=tmp_path, playbook="check")


def test_options_for_the_other_transport_are_refused(tmp_path: Path) -> None:
    """WinRM options for an ssh:// target: UsageError."""
    with pytest.raises(UsageError, match="winrm options for an SSH target"):
        api.check(UNREACHABLE, winrm=WinRmOptions(), run_dir=tmp_path / "r")


def test_a_string_for_a_list_of_names_is_refused() -> None:
    """only='cleanup' (a string, not a list) is a UsageError, not eight one-letter names."""
    with pytest.raises(UsageError, match="only: expected a list"):
        api.plan(profile="debian", only="cleanup")


def test_plan_without_a_target_is_typed_and_offline() -> None:
    """plan(profile=...) returns the Plan; conditions on facts stay undecided."""
    planned = api.plan(profile="debian")
    assert planned.facts is None
    assert planned.profile == "debian"
    assert planned.playbook == "generalize"
    assert "deprovision/waagent-deprovision" in [s.key for s in planned.steps]


def test_plan_without_a_target_refuses_transport_options() -> None:
    """ssh options and no target: UsageError."""
    with pytest.raises(UsageError, match="without a target"):
        api.plan(profile="debian", ssh=SshOptions())


def test_an_unreachable_target_is_a_result_not_an_exception(tmp_path: Path) -> None:
    """Once the run started, failures are results: exit 4, result.json parsed, folder kept."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    result = api.check(
        UNREACHABLE, run_dir=tmp_path / "r", ssh=SshOptions(known_hosts=tmp_path / "kh")
    )
    assert result.exit_code is ExitCode.CONNECTION_FAILED
    assert result.status == "failed"
    assert not result.ok
    assert result.run_dir == tmp_path / "r"
    assert result.document.run_id == result.run_id
    assert result.document.exit_code == int(ExitCode.CONNECTION_FAILED)
    assert (root.handlers, root.level) == (handlers, level)
