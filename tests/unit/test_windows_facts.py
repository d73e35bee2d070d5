"""Windows facts (parsing, shape) and the Sysprep log diagnosis of agent.windows_logs."""

from __future__ import annotations

from typing import Any

import pytest

from agent import expressions
from agent.errors import ConnectError
from agent.facts_windows import describe, facts_from_values, gather_windows_facts
from agent.results import CommandResult
from agent.windows_logs import KNOWN_FAILURES, diagnose, first_errors

VALUES = {
    "caption": "Microsoft Windows Server 2019 Datacenter",
    "product_name": "Windows Server 2019 Datacenter",
    "product_type": "ServerNT",
    "edition_id": "ServerDatacenter",
    "installation_type": "Server Core",
    "build": "17763",
    "version": "10.0.17763",
    "ubr": "6893",
    "display_version": "",
    "arch": "AMD64",
    "hostname": "GOLDEN",
    "user": "GOLDEN\\Administrator",
    "is_system": "False",
    "is_admin": "True",
    "image_state": "IMAGE_STATE_COMPLETE",
    "generalization_state": "7",
    "cleanup_state": "",
    "part_of_domain": "False",
    "domain": "WORKGROUP",
}


def test_values_become_typed_facts() -> None:
    """KEY=VALUE output becomes typed facts; an empty number is None."""
    facts = facts_from_values(VALUES)
    assert facts.product_name == "Windows Server 2019 Datacenter"
    assert (facts.build, facts.ubr, facts.generalization_state) == ("17763", 6893, 7)
    assert facts.cleanup_state is None
    assert (facts.is_admin, facts.is_system, facts.part_of_domain) == (True, False, False)
    assert describe(facts).startswith("Windows Server 2019 Datacenter build 17763.6893")


def test_product_comes_from_the_caption() -> None:
    """The caption wins over the registry ProductName, which newer releases do not update."""
    facts = facts_from_values({**VALUES, "product_name": "Windows 10 Server"})
    assert facts.os_release == {
        "ID": "windows",
        "ID_LIKE": "",
        "VERSION_ID": "10.0.17763",
        "WINDOWS_PRODUCT": "Windows Server 2019 Datacenter",
        "WINDOWS_PRODUCT_TYPE": "server",
        "WINDOWS_BUILD": "17763",
        "WINDOWS_EDITION_ID": "ServerDatacenter",
        "WINDOWS_INSTALLATION_TYPE": "Server Core",
    }


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return None


def test_facts_dict_matches_the_known_windows_facts() -> None:
    """as_dict() has exactly the shape `imageprep validate` checks Windows profiles against."""
    assert _shape(facts_from_values(VALUES).as_dict()) == expressions.KNOWN_WINDOWS_FACTS


class _Answer:
    """An executor whose every command answers the same (a host that is not Windows)."""

    description = "winrm://x@linux-box:5985"

    def __init__(self, result: CommandResult) -> None:
        self.result = result

    def run(self, command: str, **_: Any) -> CommandResult:
        return self.result


def test_a_host_that_is_not_windows_is_a_connect_error() -> None:
    """No build number in the answer: a one-line ConnectError, not half-empty facts."""
    result = CommandResult(
        command="", exit_code=127, stdout="", stderr="sh: 1: $cv: not found\n", duration=0.0
    )
    with pytest.raises(ConnectError, match=r"could not read Windows facts .*not found"):
        gather_windows_facts(_Answer(result))  # type: ignore[arg-type]


SETUPERR = (
    "2026-01-01 12:00:00, Info                  SYSPRP setting things up\n"
    "2026-01-01 12:00:01, Error                 SYSPRP BitLocker-Sysprep: BitLocker is on for "
    "the OS volume. Turn BitLocker off to run Sysprep. (0x80310039)\n"
    "2026-01-01 12:00:01, Error      [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure\n"
)


def test_first_errors_drop_timestamps_and_info_lines() -> None:
    """Only error lines are kept, in order, without their timestamp."""
    assert first_errors(SETUPERR) == [
        "Error                 SYSPRP BitLocker-Sysprep: BitLocker is on for the OS volume. "
        "Turn BitLocker off to run Sysprep. (0x80310039)",
        "Error      [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure",
    ]


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        ("Failed to remove apps for the current user: 0x80073cf2.", "AppX package"),
        ("SYSPRP Package A_1_x64__p was installed for a user, but not provisioned", "AppX"),
        ("BitLocker-Sysprep: BitLocker is on for the OS volume. (0x80310039)", "BitLocker"),
        (
            "Sysprep_Clean_Validate_Opk: There are one or more Windows updates that require a "
            "reboot.",
            "reboot is pending",
        ),
        (
            "Failure occurred while executing 'SLReArmWindows' from C:\\Windows\\System32\\slc.dll",
            "rearm",
        ),
    ],
)
def test_known_failures_are_diagnosed(line: str, cause: str) -> None:
    """Each known Sysprep failure line maps to a one-line cause and fix."""
    known = diagnose(["Error SYSPRP something generic", line])
    assert known is not None
    assert cause in known.cause
    assert "fix: " in known.describe()
    assert "\n" not in known.describe()


def test_unknown_lines_have_no_diagnosis() -> None:
    """A line nobody recognises gets no invented cause."""
    assert diagnose(["Error SYSPRP something nobody has seen"]) is None
    assert len(KNOWN_FAILURES) == 4
