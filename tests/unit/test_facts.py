"""Facts parsing: the text the gather script prints becomes typed facts; and gathering
them beside the VM's lock."""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any

import pytest

from agent.errors import CommandTimeout, TargetBusy
from agent.facts import extract_version, facts_from_values, gather_facts, parse_key_values
from agent.results import CommandResult
from tests.local_executor import LocalShellExecutor

GATHERED = """\
os_ID=ubuntu
os_ID_LIKE=debian
os_VERSION_ID=22.04
os_VERSION_CODENAME=jammy
os_PRETTY_NAME=Ubuntu 22.04.4 LTS
kernel=5.15.0-1057-azure
arch=x86_64
hostname=golden
user=azureuser
uid=1000
has_waagent=1
has_cloud-init=1
has_sudo=1
has_systemctl=1
systemd_booted=1
cloud_init_version=/usr/bin/cloud-init 23.4.4-0ubuntu0~22.04.1
waagent_version=WALinuxAgent-2.2.46 running on ubuntu 22.04
resolv_conf_symlink=1
"""


def test_os_release_fields_are_parsed() -> None:
    """ID, ID_LIKE and VERSION_ID come through for profile matching."""
    facts = facts_from_values(parse_key_values(GATHERED), "azureuser")
    assert facts.os_release == {"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "22.04"}


def test_tool_versions_are_extracted() -> None:
    """cloud-init and waagent versions are reduced to their dotted numbers."""
    facts = facts_from_values(parse_key_values(GATHERED), None)
    assert (facts.cloud_init_version, facts.waagent_version) == ("23.4.4", "2.2.46")


def test_systemd_needs_to_be_booted_not_just_installed() -> None:
    """systemctl present without /run/systemd/system is not a systemd system."""
    values = parse_key_values(GATHERED)
    values["systemd_booted"] = "0"
    assert facts_from_values(values, None).tools["systemd"] is False


def test_non_root_login_is_not_root() -> None:
    """uid 1000 is not root; expressions see is_root false."""
    facts = facts_from_values(parse_key_values(GATHERED), None)
    assert facts.as_dict()["is_root"] is False


def test_missing_ovf_user_is_none() -> None:
    """An empty ovf-env UserName becomes None, not an empty string."""
    assert facts_from_values(parse_key_values(GATHERED), "").ovf_user is None


def test_extract_version_of_garbage_is_none() -> None:
    """A version string without digits yields None."""
    assert extract_version("command not found") is None


def _uname_waiting_for(stubs: Path, flag: Path) -> LocalShellExecutor:
    """Real bash whose `uname` answers only once ``flag`` exists."""
    stubs.mkdir()
    (stubs / "uname").write_text(
        f'#!/bin/sh\nwhile [ ! -e {flag} ]; do sleep 0.01; done\nexec /bin/uname "$@"\n'
    )
    (stubs / "uname").chmod(0o755)
    return LocalShellExecutor(path_prefix=stubs)


def test_meanwhile_runs_while_the_facts_command_is_out(tmp_path: Path) -> None:
    """The facts command finishes only after ``meanwhile`` ran: they overlap."""
    flag = tmp_path / "lock-taken"
    executor = _uname_waiting_for(tmp_path / "stubs", flag)
    facts = gather_facts(executor, timeout=10, meanwhile=flag.touch)
    assert facts.arch == os.uname().machine


def test_an_error_of_meanwhile_is_raised(tmp_path: Path) -> None:
    """A busy lock ends the gathering with the lock's error, not the facts'."""
    executor = _uname_waiting_for(tmp_path / "stubs", tmp_path / "never")

    def busy() -> None:
        raise TargetBusy("another run holds the lock on the VM")

    with pytest.raises(TargetBusy, match="another run"):
        gather_facts(executor, timeout=0.5, meanwhile=busy)


def test_an_error_of_the_facts_command_is_raised_in_the_caller(tmp_path: Path) -> None:
    """A facts command that times out in the thread still fails the caller's call."""
    executor = _uname_waiting_for(tmp_path / "stubs", tmp_path / "never")
    with pytest.raises(CommandTimeout, match="reading the facts timed out"):
        gather_facts(executor, timeout=0.5, meanwhile=lambda: None)


_RUN: contextvars.ContextVar[str] = contextvars.ContextVar("run", default="none")


class _ContextRecorder(LocalShellExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def run(self, command: str, **kwargs: Any) -> CommandResult:
        self.seen.append(_RUN.get())
        return super().run(command, **kwargs)


def test_the_facts_thread_sees_the_callers_context() -> None:
    """Its log events keep the run's keys and, in a fleet, its host's run log."""
    executor = _ContextRecorder()
    token = _RUN.set("r42")
    try:
        gather_facts(executor, meanwhile=lambda: None)
    finally:
        _RUN.reset(token)
    assert executor.seen == ["r42", "r42"]
