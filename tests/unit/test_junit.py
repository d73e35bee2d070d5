"""--junit: result.json's steps as JUnit XML that CI test views accept."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from agent.junit import junit_xml, write_junit
from agent.records import is_verification_phase


def _step(phase: str, name: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "name": name, "status": status, "duration": 0.25, **extra}


RESULT: dict[str, Any] = {
    "run_id": "abc",
    "playbook": "generalize",
    "target": "ssh://u@h:22",
    "status": "failed",
    "exit_code": 7,
    "steps": [
        _step("cleanup", "apt-cache", "ok", stdout_tail="cleaned\n"),
        _step("cleanup", "tmp-files", "failed", exit_code=1, message="exit 1", stderr_tail="e"),
        _step("verify", "machine-id-empty", "failed", exit_code=1, message="not empty"),
        _step("preflight", "resolv", "skipped", message="when: false"),
        _step("shutdown", "power-off", "not_run"),
    ],
}


def _suite() -> ET.Element:
    return ET.fromstring(junit_xml(RESULT))  # noqa: S314 - XML this test made


def test_one_testcase_per_step() -> None:
    """Every planned step is a testcase named phase / step."""
    cases = [(c.get("classname"), c.get("name")) for c in _suite().iter("testcase")]
    assert cases == [(s["phase"], s["name"]) for s in RESULT["steps"]]


def test_failed_verify_step_is_a_failure() -> None:
    """A verification that failed is a JUnit <failure>, with its message."""
    case = next(c for c in _suite().iter("testcase") if c.get("name") == "machine-id-empty")
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "not empty"


def test_failed_non_verify_step_is_an_error() -> None:
    """A failed cleanup step is an <error> with its exit code and stderr."""
    case = next(c for c in _suite().iter("testcase") if c.get("name") == "tmp-files")
    error = case.find("error")
    assert error is not None
    assert "exit code: 1" in (error.text or "")


def test_skipped_and_unreached_steps_are_skipped() -> None:
    """Skipped steps and steps the run never reached are <skipped>."""
    suite = _suite()
    assert suite.get("skipped") == "2"
    assert suite.get("failures") == "1"
    assert suite.get("errors") == "1"


def test_control_characters_do_not_break_the_xml() -> None:
    """Terminal escapes and NULs in a step's output are replaced, so the file still parses."""
    result = {"steps": [_step("verify", "x", "failed", stderr_tail="\x1b[31mred\x00")]}
    error = ET.fromstring(junit_xml(result)).find("testcase/failure")  # noqa: S314
    assert error is not None
    assert "red" in (error.text or "")


def test_written_atomically(tmp_path: Path) -> None:
    """write_junit leaves exactly the file, no temporary beside it."""
    path = tmp_path / "out" / "junit.xml"
    write_junit(path, RESULT)
    assert ET.parse(path).getroot().tag == "testsuite"  # noqa: S314
    assert [p.name for p in path.parent.iterdir()] == ["junit.xml"]


@pytest.mark.parametrize(
    ("phase", "verification"),
    [("verify", True), ("azure-verify", True), ("preflight", False), ("verifying", False)],
)
def test_which_phases_are_verification(phase: str, verification: bool) -> None:
    """`verify` and a playbook's `*-verify` are verification; no other phase is."""
    assert is_verification_phase(phase) is verification
