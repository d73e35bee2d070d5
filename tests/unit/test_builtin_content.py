"""The shipped playbooks and distro profiles: valid, consistent, and shaped as promised."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from copy import deepcopy
from typing import Any

import pytest

from agent import expressions
from agent.catalog import Catalog, validate_files
from agent.records import ResolvedProfile, Step

DEBIAN_FACTS: dict[str, Any] = {
    "os": {
        "id": "debian",
        "id_like": [],
        "version_id": "12",
        "version_codename": "bookworm",
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
    },
    "kernel": "6.1.0-18-amd64",
    "arch": "x86_64",
    "hostname": "golden",
    "user": "azureuser",
    "is_root": False,
    "tools": {"waagent": True, "cloud_init": True, "sudo": True, "systemd": True},
    "cloud_init_version": "22.4.2",
    "waagent_version": "2.9.0.4",
    "ovf_user": "azureuser",
    "resolv_conf_symlink": False,
}

GENERALIZE_PHASES = ["preflight", "cleanup", "deprovision", "verify", "shutdown"]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def all_steps(catalog: Catalog) -> list[tuple[str, str, Step]]:
    return [
        (prof.id, phase, step)
        for prof in catalog.profiles()
        for phase, steps in prof.phases.items()
        for step in steps
    ]


def selected(prof: ResolvedProfile, phase: str, facts: dict[str, Any]) -> list[str]:
    return [
        s.name
        for s in prof.phases[phase]
        if s.enabled and (s.when is None or expressions.evaluate(s.when, facts, prof.vars))
    ]


def test_all_builtin_content_validates() -> None:
    """`imageprep validate` with no files finds no problem in the shipped YAML."""
    assert validate_files() == []


def test_every_when_and_template_parses(catalog: Catalog) -> None:
    """Every condition and template in the built-ins passes the syntax checks."""
    for _pid, _phase, step in all_steps(catalog):
        if step.when is not None:
            expressions.check_expression(step.when)
        expressions.check_template(step.run)


def test_every_reference_names_a_defined_var_or_known_fact(catalog: Catalog) -> None:
    """No step reads a var its profile lacks or a fact facts.py does not produce."""
    for prof in catalog.profiles():
        for steps in prof.phases.values():
            for step in steps:
                refs = expressions.template_references(step.run)
                if step.when:
                    refs += sorted(expressions.expression_references(step.when))
                assert expressions.check_references(refs, prof.vars) == [], (prof.id, step.name)


def test_playbooks_are_as_designed(catalog: Catalog) -> None:
    """generalize runs the six phases behind a backup; check is preflight only."""
    generalize = catalog.get_playbook("generalize")
    assert generalize.phases == ["backup", *GENERALIZE_PHASES]
    assert generalize.requires_backup
    check = catalog.get_playbook("check")
    assert (check.phases, check.requires_backup) == (["preflight"], False)


@pytest.mark.parametrize("pid", ["debian", "ubuntu"])
def test_profiles_define_every_generalize_phase(catalog: Catalog, pid: str) -> None:
    """Each concrete profile has steps for every phase the generalize playbook runs."""
    prof = catalog.get_profile(pid)
    assert [p for p in GENERALIZE_PHASES if not prof.phases.get(p)] == []


@pytest.mark.parametrize(
    ("os_release", "expected"),
    [
        ({"ID": "debian", "VERSION_ID": "12"}, "debian"),
        ({"ID": "debian", "VERSION_ID": "13"}, "debian"),
        ({"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "20.04"}, "ubuntu"),
        ({"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "22.04"}, "ubuntu"),
        ({"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "24.04"}, "ubuntu"),
    ],
)
def test_builtin_matching(catalog: Catalog, os_release: dict[str, str], expected: str) -> None:
    """Debian 12/13 and Ubuntu 20.04-24.04 each find their profile."""
    assert catalog.match_profile(os_release).id == expected


@pytest.mark.parametrize(
    "os_release",
    [
        {"ID": "debian", "VERSION_ID": "10"},
        {"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "18.04"},
        {"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "24.10"},
    ],
)
def test_builtin_profiles_refuse_unsupported_versions(
    catalog: Catalog, os_release: dict[str, str]
) -> None:
    """Releases outside a profile's range get no profile rather than a wrong one."""
    with pytest.raises(Exception, match="no profile matches"):
        catalog.match_profile(os_release)


def test_base_profile_is_abstract_and_backs_up_the_identity_paths(catalog: Catalog) -> None:
    """linux-base only serves as a base and names what the archive backup takes."""
    base = catalog.get_profile("linux-base")
    assert base.abstract
    assert base.backup_paths == ["/etc", "/home", "/root", "/var/lib/cloud", "/var/lib/waagent"]
    assert catalog.get_profile("ubuntu").backup_paths == base.backup_paths


def test_debian_generalize_selection_on_debian_12(catalog: Catalog) -> None:
    """On Debian 12 with cloud-init 22.4.2 and systemd the expected steps are chosen."""
    prof = catalog.get_profile("debian")
    cleanup = selected(prof, "cleanup", DEBIAN_FACTS)
    assert "cloud-init-clean" in cleanup
    assert "cloud-init-clean-configs" not in cleanup
    deprovision = selected(prof, "deprovision", DEBIAN_FACTS)
    assert deprovision == [
        "ovf-env-names-user",
        "waagent-deprovision",
        "user-gone",
        "sudoers-drop-user",
        "user-spools",
        "kerberos-sssd",
        "shadow-backups",
        "ssh-user-dirs",
        "ssh-host-keys",
        "log-writers-stop",
        "logs-rotated",
        "logs-truncate",
        "dbus-machine-id-link",
        "machine-id-truncate",
    ]


def test_new_cloud_init_gets_configs_all(catalog: Catalog) -> None:
    """cloud-init >= 23.4 cleans with --configs all, and Ubuntu then skips its netplan rm."""
    facts = deepcopy(DEBIAN_FACTS)
    facts["cloud_init_version"] = "24.1.3"
    prof = catalog.get_profile("ubuntu")
    cleanup = selected(prof, "cleanup", facts)
    assert "cloud-init-clean-configs" in cleanup
    assert "cloud-init-clean" not in cleanup
    assert "netplan-cloud-init" not in cleanup
    assert "--configs all" in prof.step("cleanup", "cloud-init-clean-configs").run  # type: ignore[union-attr]


def test_explicit_user_is_deleted_when_ovf_env_names_another(catalog: Catalog) -> None:
    """deprovision_user differing from ovf_user adds an explicit, destructive userdel."""
    prof = catalog.get_profile("debian")
    facts = {**DEBIAN_FACTS, "ovf_user": None}
    names = [
        s.name
        for s in prof.phases["deprovision"]
        if s.when is None
        or expressions.evaluate(s.when, facts, {**prof.vars, "deprovision_user": "builder"})
    ]
    assert "user-delete" in names
    assert "ovf-env-names-user" not in names
    assert prof.step("deprovision", "user-delete").destructive  # type: ignore[union-attr]


def test_waagent_deprovision_is_the_destructive_point(catalog: Catalog) -> None:
    """waagent -force -deprovision+user runs once, aborts on failure, never retried."""
    prof = catalog.get_profile("debian")
    steps = [s for s in prof.phases["deprovision"] if "waagent -force -deprovision+user" in s.run]
    assert len(steps) == 2  # systemd-run and the no-systemd fallback, chosen by `when`
    for step in steps:
        assert (step.destructive, step.retries, step.on_failure) == (True, 0, "abort")
    assert all(not s.destructive for p in ("preflight", "cleanup") for s in prof.phases[p])


def test_machine_id_is_reset_last(catalog: Catalog) -> None:
    """Truncating /etc/machine-id is the last change; only checks and power-off follow."""
    for pid in ("debian", "ubuntu"):
        prof = catalog.get_profile(pid)
        assert prof.phases["deprovision"][-1].name == "machine-id-truncate"


def test_shutdown_powers_off_and_never_reboots(catalog: Catalog) -> None:
    """The only shutdown step powers off, expects the disconnect and never reboots."""
    [step] = catalog.get_profile("debian").phases["shutdown"]
    assert step.expect_disconnect
    assert "poweroff" in step.run
    assert "reboot" not in step.run.replace("never reboot", "").split("#")[0]


def test_preflight_and_verify_only_read(catalog: Catalog) -> None:
    """Preflight and verify steps contain no command that changes the system."""
    writers = ("rm ", "truncate", "userdel", "mv ", "ln ", "chmod", "> /", "clean", "-delete")
    for pid in ("debian", "ubuntu"):
        prof = catalog.get_profile(pid)
        for phase in ("preflight", "verify"):
            for step in prof.phases[phase]:
                code = "\n".join(
                    line for line in step.run.splitlines() if not line.strip().startswith("#")
                )
                assert not [w for w in writers if w in code], (pid, phase, step.name)


def test_verify_steps_report_every_failed_assertion(catalog: Catalog) -> None:
    """Verification steps continue on failure so the report lists every broken fact."""
    for step in catalog.get_profile("ubuntu").phases["verify"]:
        assert step.on_failure == "continue", step.name


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_rendered_script_is_valid_bash(catalog: Catalog) -> None:
    """Each Linux step's command, rendered as the plan renders it, passes `bash -n`."""
    for pid, phase, step in all_steps(catalog):
        if catalog.get_profile(pid).platform == "windows":
            continue  # PowerShell: tests/unit/test_windows_profile.py runs it on the double
        script = expressions.render(
            step.run, DEBIAN_FACTS, {**catalog.get_profile(pid).vars}, quote=shlex.quote
        )
        result = subprocess.run(
            ["bash", "-n"], input=script, text=True, capture_output=True, check=False
        )
        assert result.returncode == 0, f"{pid} {phase}/{step.name}: {result.stderr}"
