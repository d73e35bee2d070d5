"""The distro profiles beyond Debian and the azure-ready playbook: matching, shape, safety."""

from __future__ import annotations

import re
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest

from agent.catalog import Catalog, validate_files
from agent.errors import CatalogError, SchemaError
from agent.plan import Plan, Selection, build_plan
from tests.unit.test_builtin_content import DEBIAN_FACTS

LINUX_PROFILES = [
    "debian",
    "ubuntu",
    "rhel-8",
    "rhel-9",
    "oracle-linux-8",
    "oracle-linux-9",
    "sles-15",
    "opensuse-leap-15",
]
READY_PHASES = ["azure-preflight", "azure-prepare", "azure-verify"]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def facts_for(os_id: str, version: str, like: tuple[str, ...] = ()) -> dict[str, Any]:
    facts = deepcopy(DEBIAN_FACTS)
    facts["os"].update(id=os_id, version_id=version, id_like=list(like))
    return facts


def plan(catalog: Catalog, pid: str, playbook: str, selection: Selection | None = None) -> Plan:
    prof = catalog.get_profile(pid)
    book = catalog.get_playbook(playbook)
    return build_plan(
        profile_id=pid,
        profile_file=prof.source_file,
        profile_phases=prof.phases,
        profile_vars=prof.vars,
        backup_paths=prof.backup_paths,
        playbook_name=playbook,
        playbook_file=catalog.playbook_file(playbook),
        playbook_phases=book.phases,
        requires_backup=book.requires_backup,
        facts=DEBIAN_FACTS,
        selection=selection,
    )


# ------------------------------------------------------------------------------ matching


@pytest.mark.parametrize(
    ("os_release", "expected"),
    [
        ({"ID": "debian", "VERSION_ID": "11"}, "debian"),
        ({"ID": "rhel", "ID_LIKE": "fedora", "VERSION_ID": "8.10"}, "rhel-8"),
        ({"ID": "rhel", "ID_LIKE": "fedora", "VERSION_ID": "9.4"}, "rhel-9"),
        ({"ID": "centos", "ID_LIKE": "rhel fedora", "VERSION_ID": "8"}, "rhel-8"),
        ({"ID": "centos", "ID_LIKE": "rhel fedora", "VERSION_ID": "9"}, "rhel-9"),
        ({"ID": "almalinux", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "8.9"}, "rhel-8"),
        ({"ID": "almalinux", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "9.4"}, "rhel-9"),
        ({"ID": "rocky", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "8.9"}, "rhel-8"),
        ({"ID": "rocky", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "9.3"}, "rhel-9"),
        # Another rebuild, known only by ID_LIKE.
        ({"ID": "eurolinux", "ID_LIKE": "rhel fedora centos", "VERSION_ID": "9.2"}, "rhel-9"),
        # Oracle Linux says ID_LIKE=fedora: matched by its ID only.
        ({"ID": "ol", "ID_LIKE": "fedora", "VERSION_ID": "8.9"}, "oracle-linux-8"),
        ({"ID": "ol", "ID_LIKE": "fedora", "VERSION_ID": "9.3"}, "oracle-linux-9"),
        ({"ID": "sles", "ID_LIKE": "suse", "VERSION_ID": "15.5"}, "sles-15"),
        ({"ID": "sles_sap", "ID_LIKE": "suse", "VERSION_ID": "15.4"}, "sles-15"),
        (
            {"ID": "opensuse-leap", "ID_LIKE": "suse opensuse", "VERSION_ID": "15.5"},
            "opensuse-leap-15",
        ),
    ],
)
def test_distributions_find_their_profile(
    catalog: Catalog, os_release: dict[str, str], expected: str
) -> None:
    """Each supported distribution and rebuild finds its profile by ID or ID_LIKE."""
    assert catalog.match_profile(os_release).id == expected


@pytest.mark.parametrize(
    ("os_release", "says"),
    [
        ({"ID": "rhel", "ID_LIKE": "fedora", "VERSION_ID": "7.9"}, "rhel-8 matches by ID"),
        ({"ID": "rocky", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "10.0"}, "outside >=9,<10"),
        ({"ID": "ol", "ID_LIKE": "fedora", "VERSION_ID": "7.9"}, "oracle-linux-8 matches by ID"),
        ({"ID": "sles", "ID_LIKE": "suse", "VERSION_ID": "12.5"}, "sles-15 matches by ID"),
        # systemd 234 has no `systemd-run --pipe` (sles-15.yaml).
        ({"ID": "sles", "ID_LIKE": "suse", "VERSION_ID": "15.2"}, "outside >=15.3,<16"),
        (
            {"ID": "opensuse-leap", "ID_LIKE": "suse opensuse", "VERSION_ID": "15.2"},
            "opensuse-leap-15 matches by ID but VERSION_ID 15.2 is outside >=15.3,<16",
        ),
        ({"ID": "debian", "VERSION_ID": "10"}, "VERSION_ID 10 is outside >=11,<14"),
        ({"ID": "debian", "VERSION_ID": "14"}, "VERSION_ID 14 is outside >=11,<14"),
        ({"ID": "fedora", "VERSION_ID": "40"}, "ID=fedora"),
        ({"ID": "arch"}, "ID=arch"),
    ],
)
def test_unsupported_releases_get_a_clear_error(
    catalog: Catalog, os_release: dict[str, str], says: str
) -> None:
    """A release outside every range, or an unknown one, is refused with the reason."""
    with pytest.raises(CatalogError) as caught:
        catalog.match_profile(os_release)
    message = str(caught.value)
    assert "no profile matches" in message
    assert says in message
    assert "known profiles:" in message
    assert "rhel-9" in message


# -------------------------------------------------------------------------- distro facts


@pytest.mark.parametrize(
    ("pid", "service", "agent_package", "tool"),
    [
        ("debian", "walinuxagent", "waagent", "initramfs-tools"),
        ("ubuntu", "walinuxagent", "walinuxagent", "initramfs-tools"),
        ("rhel-8", "waagent", "WALinuxAgent", "dracut"),
        ("rhel-9", "waagent", "WALinuxAgent", "dracut"),
        ("oracle-linux-8", "waagent", "WALinuxAgent", "dracut"),
        ("oracle-linux-9", "waagent", "WALinuxAgent", "dracut"),
        ("sles-15", "waagent", "python-azure-agent", "dracut"),
        ("opensuse-leap-15", "waagent", "python-azure-agent", "dracut"),
    ],
)
def test_agent_package_service_and_initramfs_tool(
    catalog: Catalog, pid: str, service: str, agent_package: str, tool: str
) -> None:
    """Each profile names its distro's agent package, agent unit and initramfs tool."""
    prof = catalog.get_profile(pid)
    assert prof.vars["agent_service"] == service
    assert isinstance(prof.vars["azure_packages"], list)
    assert agent_package in prof.vars["azure_packages"]
    assert "cloud-init" in prof.vars["azure_packages"]
    assert prof.vars["initramfs_tool"] == tool


@pytest.mark.parametrize(
    ("pid", "fmt"),
    [
        ("rhel-8", "ifcfg"),
        ("rhel-9", "keyfile"),
        ("oracle-linux-8", "ifcfg"),
        ("oracle-linux-9", "keyfile"),
    ],
)
def test_rhel_network_profile_format_by_major_version(catalog: Catalog, pid: str, fmt: str) -> None:
    """RHEL 8 writes ifcfg files, RHEL 9 NetworkManager keyfiles."""
    assert catalog.get_profile(pid).vars["nm_profile_format"] == fmt


def test_profiles_are_built_by_extends_not_copies(catalog: Catalog) -> None:
    """Concrete profiles add only data or distro-specific steps on their bases."""
    chains = {pid: catalog.get_profile(pid).chain for pid in LINUX_PROFILES}
    assert chains["oracle-linux-9"] == [
        "distro_profiles/oracle-linux-9.yaml",
        "distro_profiles/rhel-9.yaml",
        "distro_profiles/rhel-family.yaml",
        "distro_profiles/linux-base.yaml",
    ]
    assert chains["opensuse-leap-15"][1:] == [
        "distro_profiles/suse-family.yaml",
        "distro_profiles/linux-base.yaml",
    ]
    assert chains["ubuntu"][1:] == [
        "distro_profiles/debian.yaml",
        "distro_profiles/linux-base.yaml",
    ]
    # rhel-8/9, oracle-linux-8/9, sles-15 and opensuse-leap-15 are data only.
    for pid in (
        "rhel-8",
        "rhel-9",
        "oracle-linux-8",
        "oracle-linux-9",
        "sles-15",
        "opensuse-leap-15",
    ):
        text = Path(catalog.profile_origin(pid).path).read_text()
        assert "phases:" not in text, pid


def test_family_specific_steps(catalog: Catalog) -> None:
    """Subscription clean-up, SELinux relabel and grubby are where the distro needs them."""

    def names(pid: str, phase: str) -> list[str]:
        return [s.name for s in catalog.get_profile(pid).phases[phase]]

    for pid in ("rhel-8", "rhel-9", "oracle-linux-8", "oracle-linux-9"):
        deprovision = names(pid, "deprovision")
        assert deprovision.index("subscription-cleanup") < deprovision.index("waagent-deprovision")
        assert deprovision.index("selinux-relabel") < deprovision.index("machine-id-truncate")
        assert names(pid, "azure-prepare")[-1] == "selinux-relabel"
        assert "grubby" in catalog.get_profile(pid).step("azure-prepare", "grub-regenerate").run  # type: ignore[union-attr]
    for pid in ("sles-15", "opensuse-leap-15"):
        deprovision = names(pid, "deprovision")
        assert deprovision.index("scc-deregister") < deprovision.index("waagent-deprovision")
        assert "sudoers-no-targetpw" in names(pid, "azure-prepare")
        assert "selinux-relabel" not in deprovision
    for pid in ("debian", "ubuntu"):
        grub = catalog.get_profile(pid).step("azure-prepare", "grub-regenerate")
        assert grub is not None
        assert "update-grub" in grub.run
        assert "selinux-relabel" not in names(pid, "deprovision")


# ------------------------------------------------------------------------- azure-ready


def test_azure_ready_playbook_is_backed_up_and_never_generalizes(catalog: Catalog) -> None:
    """azure-ready: backup, preflight, prepare, verify; no deprovision, no shutdown."""
    book = catalog.get_playbook("azure-ready")
    assert book.phases == ["backup", *READY_PHASES]
    assert book.requires_backup


@pytest.mark.parametrize("pid", LINUX_PROFILES)
def test_azure_ready_never_deprovisions(catalog: Catalog, pid: str) -> None:
    """No azure-ready step is destructive, deprovisions, deletes users or powers off."""
    for step in plan(catalog, pid, "azure-ready").steps:
        code = "\n".join(
            line for line in step.command.splitlines() if not line.strip().startswith("#")
        )
        assert not step.spec.destructive, step.key
        assert not step.spec.expect_disconnect, step.key
        for word in ("-deprovision", "userdel", "poweroff", "machine-id", "reboot"):
            assert word not in code, (step.key, word)


@pytest.mark.parametrize("pid", LINUX_PROFILES)
def test_azure_ready_phases_are_complete(catalog: Catalog, pid: str) -> None:
    """Every profile has checks, preparation and verification for azure-ready."""
    prof = catalog.get_profile(pid)
    assert [p for p in READY_PHASES if not prof.phases.get(p)] == []
    verify = {s.name for s in prof.phases["azure-verify"]}
    assert {
        "initramfs-hv-drivers",
        "kernel-cmdline-configured",
        "boot-config-cmdline",
        "cloud-init-schema",
        "waagent-conf-settings",
        "waagent-conf-no-removed-options",
        "no-swap-on-os-disk",
        "network-no-mac-pin",
        "azure-packages-installed",
    } <= verify
    for step in prof.phases["azure-verify"]:
        assert step.on_failure == "continue", step.name


@pytest.mark.parametrize("pid", LINUX_PROFILES)
def test_azure_checks_only_read(catalog: Catalog, pid: str) -> None:
    """azure-preflight and azure-verify steps contain no command that changes the system."""
    writers = (
        "rm ",
        "truncate",
        "mv ",
        "ln ",
        "chmod",
        "chown",
        "> /",
        "-delete",
        "systemctl enable",
        "dnf install",
        "zypper --non",
        "apt-get install",
    )
    prof = catalog.get_profile(pid)
    for phase in ("azure-preflight", "azure-verify"):
        for step in prof.phases[phase]:
            code = "\n".join(
                line for line in step.run.splitlines() if not line.strip().startswith("#")
            )
            assert not [w for w in writers if w in code], (pid, phase, step.name)
            # coreutils install as a command (a refusal may tell the user to run
            # grub-install, which is another program).
            assert not re.search(r"(^|[\s;|&(])install\s", code), (pid, phase, step.name)


@pytest.mark.parametrize("pid", LINUX_PROFILES)
def test_waagent_settings_leave_out_options_removed_in_2_2_45(catalog: Catalog, pid: str) -> None:
    """waagent.conf gets resource-disk settings, never Provisioning.Enabled/UseCloudInit."""
    prof = catalog.get_profile(pid)
    settings = prof.vars["waagent_settings"]
    assert isinstance(settings, list)
    assert {"ResourceDisk.Format=n", "ResourceDisk.EnableSwap=n"} <= set(settings)
    assert not [
        s for s in settings if s.startswith(("Provisioning.Enabled", "Provisioning.UseCloudInit"))
    ]
    written = "".join(s.run for steps in prof.phases.values() for s in steps)
    assert "Provisioning.Enabled=" not in written
    assert "UseCloudInit=" not in written


def test_cloud_init_config_uses_lowercase_keys(catalog: Catalog) -> None:
    """The cloud-init files are written with lowercase keys (`reporting:`, not `Reporting:`)."""
    run = catalog.get_profile("linux-base").step("azure-prepare", "cloud-init-azure-config").run  # type: ignore[union-attr]
    code = "\n".join(line for line in run.splitlines() if not line.startswith("#"))
    assert "\nreporting:\n" in code
    assert "Reporting:" not in code
    assert "sudo" not in code  # written by the root shell, no `sudo cat > file`


def test_azure_ready_steps_can_be_selected(catalog: Catalog) -> None:
    """--only, --skip and --tags work on azure-ready as on generalize."""
    only = plan(
        catalog,
        "rhel-9",
        "azure-ready",
        Selection(only=frozenset({"azure-prepare/kernel-cmdline"})),
    )
    assert [s.key for s in only.steps if s.will_run] == ["azure-prepare/kernel-cmdline"]
    skip = plan(catalog, "rhel-9", "azure-ready", Selection(skip=frozenset({"hyperv-initramfs"})))
    assert "azure-prepare/hyperv-initramfs" not in [s.key for s in skip.steps if s.will_run]
    assert "azure-verify/initramfs-hv-drivers" in [s.key for s in skip.steps if s.will_run]
    tags = plan(catalog, "sles-15", "azure-ready", Selection(tags=frozenset({"grub"})))
    assert [s.key for s in tags.steps if s.will_run] == [
        "azure-prepare/kernel-cmdline",
        "azure-prepare/grub-regenerate",
        "azure-verify/kernel-cmdline-configured",
        "azure-verify/boot-config-cmdline",
    ]


def test_selection_naming_a_step_of_another_playbook_is_refused(catalog: Catalog) -> None:
    """--only with a generalize step is an error on azure-ready, naming the step."""
    with pytest.raises(Exception, match="no step named waagent-deprovision"):
        plan(catalog, "debian", "azure-ready", Selection(only=frozenset({"waagent-deprovision"})))


# -------------------------------------------------------------------------- bad input


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_drop_of_a_missing_step_names_file_and_step(tmp_path: Path) -> None:
    """Dropping a step the base does not have is an error naming the file and the step."""
    _write(
        tmp_path / "p",
        "mine.yaml",
        "id: mine\ndescription: Mine\nextends: rhel-9\nmatch: {ids: [mine]}\n"
        "phases:\n  azure-prepare:\n    - {name: grub-regen, drop: true}\n",
    )
    problems = validate_files(profiles_dirs=[tmp_path / "p"])
    text = "\n".join(str(p) for p in problems)
    assert "mine.yaml:7:" in text
    assert 'drop of step "grub-regen": no such step in phase "azure-prepare"' in text


def test_user_profile_extending_a_missing_family_names_it(tmp_path: Path) -> None:
    """extends naming no profile is an error with the file and the missing id."""
    _write(
        tmp_path / "p",
        "mine.yaml",
        "id: mine\ndescription: Mine\nextends: redhat-family\nmatch: {ids: [mine]}\n",
    )
    with pytest.raises(CatalogError, match=r'mine.yaml\) extends unknown profile "redhat-family"'):
        Catalog.load(profiles_dirs=[tmp_path / "p"])


def test_circular_extends_through_builtins_names_every_file(tmp_path: Path) -> None:
    """A user rhel-family extending a profile that extends it back is a named cycle."""
    _write(
        tmp_path / "p", "rhel-family.yaml", "id: rhel-family\ndescription: Loop\nextends: loop\n"
    )
    _write(tmp_path / "p", "loop.yaml", "id: loop\ndescription: Loop\nextends: rhel-family\n")
    with pytest.raises(CatalogError) as caught:
        Catalog.load(profiles_dirs=[tmp_path / "p"])
    message = str(caught.value)
    assert "circular extends" in message
    assert "rhel-family.yaml" in message
    assert "loop.yaml" in message


def test_override_of_a_step_missing_in_one_family_names_the_base(tmp_path: Path) -> None:
    """Overriding a RHEL-only step in a SUSE profile names the SUSE base it is missing from."""
    _write(
        tmp_path / "p",
        "mine.yaml",
        "id: mine\ndescription: Mine\nextends: sles-15\nmatch: {ids: [mine]}\n"
        "phases:\n  deprovision:\n    - {name: subscription-cleanup, override: true, timeout: 5}\n",
    )
    with pytest.raises(SchemaError) as caught:
        Catalog.load(profiles_dirs=[tmp_path / "p"])
    text = str(caught.value)
    assert "mine.yaml:7:" in text
    assert 'override of step "subscription-cleanup"' in text
    assert 'base profile "sles-15"' in text
