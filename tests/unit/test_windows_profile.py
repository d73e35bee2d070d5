"""The windows-server profile, Windows matching in the catalog, and PowerShell quoting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent import expressions
from agent.catalog import Catalog, validate_files
from agent.cli import main
from agent.errors import CatalogError
from agent.plan import quote_powershell
from agent.records import ResolvedProfile

GENERALIZE_PHASES = ["preflight", "cleanup", "deprovision", "verify", "shutdown"]


@pytest.fixture(scope="module")
def profile() -> ResolvedProfile:
    return Catalog.load().get_profile("windows-server")


def windows(
    build: str,
    product_type: str = "server",
    installation_type: str = "Server",
    edition_id: str = "ServerDatacenter",
    caption: str = "Windows Server 2022 Datacenter",
) -> dict[str, str]:
    return {
        "ID": "windows",
        "WINDOWS_PRODUCT": caption,
        "WINDOWS_PRODUCT_TYPE": product_type,
        "WINDOWS_BUILD": build,
        "WINDOWS_EDITION_ID": edition_id,
        "WINDOWS_INSTALLATION_TYPE": installation_type,
    }


@pytest.mark.parametrize(
    ("build", "installation_type", "edition_id"),
    [
        ("14393", "Server", "ServerDatacenter"),
        ("17763", "Server Core", "ServerStandard"),
        ("20348", "Server Core", "ServerDatacenterAzureEdition"),
        ("26100", "Server", "ServerDatacenter"),
    ],
)
def test_supported_servers_match(build: str, installation_type: str, edition_id: str) -> None:
    """Server 2016 to 2025, Core or Desktop Experience, find windows-server by build."""
    target = windows(build, installation_type=installation_type, edition_id=edition_id)
    assert Catalog.load().match_profile(target).id == "windows-server"


def test_a_localized_caption_still_matches() -> None:
    """A Russian caption changes nothing: the caption is never matched on."""
    target = windows("17763", caption="Майкрософт Windows Server 2019 Standard")
    assert Catalog.load().match_profile(target).id == "windows-server"


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (windows("19045", product_type="client"), "ProductType client is not server"),
        (windows("9600"), "build 9600 is outside >=14393,<26200"),
        (windows("26300"), "build 26300 is outside >=14393,<26200"),
        (windows("14393", installation_type="Nano Server"), "InstallationType Nano Server"),
        (windows("17763", product_type=""), "ProductType (none)"),
    ],
)
def test_unsupported_windows_gets_no_profile(target: dict[str, str], why: str) -> None:
    """Clients, older servers, Nano and builds outside the range get no profile, with why."""
    with pytest.raises(CatalogError, match="no profile matches") as caught:
        Catalog.load().match_profile(target)
    assert why in str(caught.value)


def test_linux_never_matches_the_windows_profile() -> None:
    """A Linux os-release is matched among Linux profiles only."""
    assert Catalog.load().match_profile({"ID": "debian", "VERSION_ID": "12"}).id == "debian"


@pytest.mark.parametrize(
    ("match", "message", "line"),
    [
        ("  windows: {product_type: workstation}\n", "server or client", 4),
        ("  windows: {product_type: server, build: 'new'}\n", "version range", 4),
        ("  ids: [debian]\n  windows: {product_type: server}\n", "cannot be combined", 4),
        ("  windows: {product_type: server, edition: y}\n", "edition", 4),
        ("  windows: {product: [Windows Server 2019]}\n", "product", 4),
    ],
)
def test_bad_windows_match_is_located(tmp_path: Path, match: str, message: str, line: int) -> None:
    """A wrong match.windows is reported with file:line like every schema problem."""
    path = tmp_path / "win.yaml"
    path.write_text(f"id: win\ndescription: W\nmatch:\n{match}phases: {{}}\n")
    problems = validate_files([path])
    assert problems, "expected a problem"
    assert message in problems[0].message
    assert problems[0].line == line


def test_windows_profile_checks_facts_against_windows_facts(tmp_path: Path) -> None:
    """facts.windows.* is known in a Windows profile; a Linux-only fact is not."""
    path = tmp_path / "win.yaml"
    path.write_text(
        "id: win\ndescription: W\nmatch: {windows: {product_type: server}}\n"
        "phases:\n  preflight:\n"
        "    - {name: a, description: A, run: 'Write-Output {{ facts.windows.build }}'}\n"
        "    - {name: b, description: B, run: 'x', when: facts.tools.waagent}\n"
    )
    problems = validate_files([path])
    assert [p.message for p in problems] == [
        "unknown fact facts.tools.waagent (facts has no 'tools')"
    ]


def test_profile_has_the_linux_phase_names(profile: ResolvedProfile) -> None:
    """Every phase of the generalize playbook has steps, named as on Linux."""
    assert profile.platform == "windows"
    assert [p for p in GENERALIZE_PHASES if not profile.phases.get(p)] == []


def test_sysprep_is_the_only_destructive_step(profile: ResolvedProfile) -> None:
    """Sysprep is the point of no return: destructive, never retried, aborts on failure."""
    destructive = [
        (phase, s) for phase, steps in profile.phases.items() for s in steps if s.destructive
    ]
    assert [(phase, s.name) for phase, s in destructive] == [("deprovision", "sysprep-generalize")]
    step = destructive[0][1]
    assert (step.retries, step.on_failure) == (0, "abort")
    assert "/generalize /oobe /quit" in step.run
    assert step.timeout > int(profile.vars["sysprep_deadline_seconds"])


def test_preflight_and_verify_change_nothing(profile: ResolvedProfile) -> None:
    """Preflight and verify steps call no cmdlet that changes the machine (messages aside)."""
    writers = (
        "Remove-Item",
        "Set-Item",
        "New-Item",
        "Move-Item",
        "Stop-",
        "Start-Process",
        "Restart-",
        "Disable-",
        "Clear-",
        "sysprep.exe",
    )
    for phase in ("preflight", "verify"):
        for step in profile.phases[phase]:
            code = re.sub(r"'(?:[^']|'')*'", "''", step.run)
            assert not [w for w in writers if w in code], (phase, step.name)


def test_verify_steps_report_every_failure(profile: ResolvedProfile) -> None:
    """Verification steps continue on failure so every broken fact is listed."""
    assert all(s.on_failure == "continue" for s in profile.phases["verify"])


def test_shutdown_powers_off_expecting_the_disconnect(profile: ResolvedProfile) -> None:
    """The only shutdown step powers off (never restarts) and expects the disconnect."""
    [step] = profile.phases["shutdown"]
    assert step.expect_disconnect
    assert "shutdown.exe /s /t 0 /f" in step.run
    assert "Restart" not in step.run
    assert "/r" not in step.run


def test_event_log_clearing_is_off_by_default(profile: ResolvedProfile) -> None:
    """Clearing event logs is opt-in."""
    assert profile.step("cleanup", "clear-event-logs").enabled is False  # type: ignore[union-attr]


def test_every_reference_is_a_var_or_a_windows_fact(profile: ResolvedProfile) -> None:
    """Each template and condition reads a defined var or a fact Windows facts provide."""
    for steps in profile.phases.values():
        for step in steps:
            refs = expressions.template_references(step.run)
            if step.when:
                refs += sorted(expressions.expression_references(step.when))
            known = expressions.known_facts("windows")
            assert expressions.check_references(refs, profile.vars, known) == [], step.name


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ("$env:X `n", "'$env:X `n'"),
        ("a\u2019b", "'a\u2019\u2019b'"),
    ],
)
def test_powershell_quoting(text: str, quoted: str) -> None:
    """Values become single-quoted PowerShell literals: nothing expands, quotes doubled."""
    assert quote_powershell(text) == quoted


def test_plan_shows_exact_powershell_with_quoted_vars() -> None:
    """`plan --profile windows-server` works offline and quotes vars for PowerShell."""
    result = CliRunner().invoke(
        main,
        [
            "plan",
            "--profile",
            "windows-server",
            "--format",
            "json",
            "--var",
            "sysprep_unattend=C:\\it's.xml",
            "--var",
            "sysprep_mode_vm=false",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    [sysprep] = [s for s in plan["steps"] if s["name"] == "sysprep-generalize"]
    assert "$unattend = 'C:\\it''s.xml'" in sysprep["command"]
    assert "if ('false' -eq 'true')" in sysprep["command"]
    services = next(s for s in plan["steps"] if s["name"] == "azure-agent-running")
    assert (
        "@('RdAgent', 'WindowsAzureGuestAgent', 'WindowsAzureTelemetryService')"
        in (services["command"])
    )
    unattend_check = next(s for s in plan["steps"] if s["name"] == "unattend-file-exists")
    assert unattend_check["condition"] is True


def test_plan_shows_the_new_preflight_checks() -> None:
    """`plan --profile windows-server` lists issue 11's checks in its preflight phase."""
    result = CliRunner().invoke(main, ["plan", "--profile", "windows-server", "--format", "json"])
    assert result.exit_code == 0, result.output
    preflight = [s["name"] for s in json.loads(result.output)["steps"] if s["phase"] == "preflight"]
    for name in (
        "winrm-shell-quotas",
        "server-roles-supported",
        "cdrom-driver-enabled",
        "no-custom-unattend-on-azure",
    ):
        assert name in preflight
