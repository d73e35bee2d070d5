"""Every Linux profile runs `check`, `azure-ready` and `generalize` on a booted target.

Debian 12 and Debian 13 run on their own packages (the cloud kernel and real
initramfs-tools included: the hyperv-initramfs step rebuilds a real initramfs inside the
target). Every other row is a Debian target whose /etc/os-release claims that
distribution. The RHEL and SUSE rows boot the rpm variant, where Debian's real rpm, dnf,
zypper, dracut/lsinitrd and restorecon do the work (a local repository of tiny stand-in
rpms); the Ubuntu rows boot the Ubuntu variant, with Debian's real netplan.io, rsyslog
and NetworkManager running (Debian's waagent declares Conflicts: network-manager, so the
variant unpacks it with `dpkg --force-conflicts`); only tools Debian lacks are stand-ins
(tests/integration/standins/ and registration_standins/, strict about options). Real
bash, coreutils, sshd, sudo, systemd, waagent and cloud-init do the rest.

Every row runs on both Debian bases, so both cloud-init generations meet every profile:
bookworm (cloud-init 22.4, waagent 2.7.3, systemd 252) and trixie (cloud-init 25.1 with
the renamed units and the stricter schema, waagent 2.12, systemd 257). On the base
nearest to what the claimed release ships (Claim.suite in CLAIMS): `check` and then
`azure-ready` on one target (twice on the IDEMPOTENCE rows), `generalize` on a fresh one.
On the other base (OTHER_BASE): `azure-ready` and then `generalize` on the same target,
the order an operator runs them in; one target instead of two keeps the suite's wall
time down. The recorded commands and the resulting files are read from outside
(guest_path).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.cli_run import CliResult, imageprep, key_args
from tests.integration.distro_claims import (
    BASES,
    CLAIMS,
    CONSOLE,
    SLES_BYOS_WITH_CLOUD_CLIENT,
    SLES_PAYG_WITHOUT_CLOUD_CLIENT,
    SLES_WITHOUT_PUBLIC_CLOUD_MODULE,
    UBUNTU_UNPARSABLE_NETPLAN,
    Claim,
    calls,
)
from tests.targets import rpm_variant
from tests.targets.commands import run
from tests.targets.guestpath import guest_path
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import PACKAGES, ImageSpec, TargetImage, ensure_image
from tests.targets.variants import KERNEL_PACKAGES, ubuntu_spec

pytestmark = pytest.mark.integration

# Rows that also run azure-ready a second time (on their own base) to show it changes
# nothing then.
IDEMPOTENCE = {"debian-12", "ubuntu-22.04", "rhel-9.4", "rhel-8.10", "sles-15.5"}
# Every row on the base nearest its release (check, azure-ready, generalize on a fresh
# target), and again on the other base (azure-ready, then generalize on the same target:
# the order an operator runs them in).
OTHER_BASE = [c.on(next(b for b in BASES if b != c.suite)) for c in CLAIMS]


def _image(claim: Claim, target_image: TargetImage) -> TargetImage:
    """The row's base (bookworm or trixie): the rpm variant for RHEL and SUSE rows, else
    with Debian's cloud kernel if the row needs one; each is built once and cached
    (target_image only checks that targets can run)."""
    if claim.rpm_image:
        return ensure_image(
            ImageSpec(
                suite=claim.suite,
                packages=PACKAGES + rpm_variant.PACKAGES,
                variant=rpm_variant.NAME,
            )
        )
    if claim.family == "ubuntu":
        return ensure_image(ubuntu_spec(claim.suite))
    extra = KERNEL_PACKAGES if claim.kernel_image else ()
    if claim.suite == target_image.spec.suite and not extra:
        return target_image
    return ensure_image(ImageSpec(suite=claim.suite, packages=PACKAGES + extra))


@pytest.fixture
def images(target_image: TargetImage) -> Callable[[Claim], TargetImage]:
    """The image a row boots from (see _image), for tests that build their own claim."""
    return lambda claim: _image(claim, target_image)


def _ok(result: CliResult, what: str) -> None:
    failed = [s for s in result.report.get("steps", []) if s.get("status") not in ("ok", "skipped")]
    assert result.exit_code == 0, (
        f"{what} exited {result.exit_code}: {result.stderr[-2000:]}\nsteps not ok: {failed}"
    )


def _since(log: list[list[str]], start: int) -> list[list[str]]:
    return log[start:]


def _tools(log: list[list[str]]) -> list[str]:
    return [c[0] for c in log]


def _digest(target: NspawnTarget, paths: list[str]) -> dict[str, str]:
    out = {}
    for path in paths:
        p = target.guest_path(path)
        if p.is_file():
            st = p.stat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[path] = f"{digest} {st.st_uid}:{st.st_gid} {oct(st.st_mode)}"
    return out


_WATCHED = [
    "/etc/waagent.conf",
    "/etc/default/grub",
    "/etc/default/grub.d/99-imageprep-azure.cfg",
    "/etc/cloud/cloud.cfg.d/91-azure_datasource.cfg",
    "/etc/cloud/cloud.cfg.d/10-azure-kvp.cfg",
    "/etc/dracut.conf.d/azure.conf",
    "/etc/initramfs-tools/modules",
    "/etc/fstab",
    "/etc/sudoers",
    "/etc/sysconfig/network/dhcp",
    "/etc/sysconfig/network/ifcfg-eth0",
    "/etc/NetworkManager/system-connections/eth0.nmconnection",
    "/etc/sysconfig/network-scripts/ifcfg-eth0",
]


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.row_id)
def test_check_then_azure_ready(claim: Claim, target_image: TargetImage, tmp_path: Path) -> None:
    """check passes, azure-ready makes the claimed distro fit for Azure and verifies it."""
    image = _image(claim, target_image)
    with NspawnTarget(image, prepare=claim.prepare) as target:
        check = imageprep("check", *key_args(target), run_dir=tmp_path / "check")
        _ok(check, "check")
        assert check.report["plan"]["profile"]["id"] == claim.profile
        _azure_ready(claim, target, tmp_path)

        if claim.name in IDEMPOTENCE:
            snapshot = _digest(target, _WATCHED)
            before = len(calls(target.root))
            again = imageprep(
                "run",
                *key_args(target),
                "--playbook",
                "azure-ready",
                "--backup",
                f"archive:{tmp_path / 'backup2'}",
                run_dir=tmp_path / "ready2",
            )
            _ok(again, "second azure-ready")
            assert _digest(target, _WATCHED) == snapshot
            second = _tools(_since(calls(target.root), before))
            for rebuild in ("dracut", "mkinitrd", "update-initramfs", "dnf", "zypper"):
                assert rebuild not in second, f"second run called {rebuild}: {second}"
            assert not [
                c
                for c in _since(calls(target.root), before)
                if c[0] == "grubby" and any(a.startswith("--update-kernel") for a in c)
            ]


@pytest.mark.parametrize("claim", OTHER_BASE, ids=lambda c: c.row_id)
def test_azure_ready_then_generalize(
    claim: Claim, target_image: TargetImage, tmp_path: Path
) -> None:
    """On the row's other base, azure-ready and then generalize on the same target."""
    with NspawnTarget(_image(claim, target_image), prepare=claim.prepare) as target:
        _azure_ready(claim, target, tmp_path)
        _generalize(claim, target, tmp_path)


def _azure_ready(claim: Claim, target: NspawnTarget, tmp_path: Path) -> None:
    """Run azure-ready on `target` and check what it changed (and what it left alone)."""
    _services_running(claim, target)
    machine_id = target.guest_path("/etc/machine-id").read_text()
    before = len(calls(target.root))
    ready = imageprep(
        "run",
        *key_args(target),
        "--playbook",
        "azure-ready",
        "--backup",
        f"archive:{tmp_path / 'backup'}",
        run_dir=tmp_path / "ready",
    )
    _ok(ready, "azure-ready")
    assert ready.report["plan"]["profile"]["id"] == claim.profile
    assert ready.report["point_of_no_return_reached"] is False
    # azure-verify's checks are the run's verification in result.json, as in JUnit.
    assert {v["phase"] for v in ready.report["verification"]} == {"azure-verify"}
    _assert_not_deprovisioned(target, machine_id)
    _assert_ready_files(claim, target)
    _assert_ready_calls(claim, _since(calls(target.root), before))


def _services_running(claim: Claim, target: NspawnTarget) -> None:
    """The Ubuntu rows' image runs an Ubuntu server's rsyslog and NetworkManager."""
    if claim.family != "ubuntu":
        return
    states = subprocess.run(
        target.ssh_command("systemctl", "is-active", "rsyslog", "NetworkManager"),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert states.split() == ["active", "active"], states


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.row_id)
def test_generalize(claim: Claim, target_image: TargetImage, tmp_path: Path) -> None:
    """generalize deprovisions the claimed distro and removes its registration data."""
    with NspawnTarget(_image(claim, target_image), prepare=claim.prepare) as target:
        _services_running(claim, target)
        _generalize(claim, target, tmp_path)


def _generalize(claim: Claim, target: NspawnTarget, tmp_path: Path) -> None:
    """Run generalize on `target` and check the deprovisioned result from outside."""
    before = len(calls(target.root))
    result = imageprep(
        "run",
        *key_args(target),
        "--backup",
        f"archive:{tmp_path / 'backup-generalize'}",
        run_dir=tmp_path / "run",
    )
    stopped = target.wait_stopped(60)
    _ok(result, "generalize")
    assert stopped
    assert result.report["powered_off"] is True
    assert result.report["plan"]["profile"]["id"] == claim.profile
    root = target.root
    assert target.guest_path("/etc/machine-id").read_text() == ""
    assert list(target.guest_path("/etc/ssh").glob("ssh_host_*")) == []
    passwd = target.guest_path("/etc/passwd").read_text()
    assert not re.search(rf"^{target.user}:", passwd, re.MULTILINE)
    log = _since(calls(root), before)
    if claim.family == "rhel":
        _assert_waagent_completed_on_rhel(claim, target)
        _assert_rhel_deprovisioned(claim, target, log)
    if claim.family == "suse":
        _assert_suse_deprovisioned(claim, target, log)
    _assert_network_and_subscriptions_left(claim, target, log)


def _assert_rhel_deprovisioned(claim: Claim, target: NspawnTarget, log: list[list[str]]) -> None:
    """dnf cleaned, SELinux relabel asked for, RHSM, Insights and rhc unregistered."""
    assert ["dnf", "clean", "all"] in log
    assert ["selinuxenabled"] in log
    relabel = [c for c in log if c[0] == "restorecon"]
    assert relabel
    assert relabel[-1][1] == "-R"
    assert "/etc" in relabel[-1]
    assert not list(target.guest_path("/etc/pki").glob("*/*.pem"))
    assert not target.guest_path("/etc/sysconfig/rhn/systemid").exists()
    if claim.name == "rhel-9.4":
        # rhc disconnect unregisters from RHSM and Insights at once
        assert ["rhc", "disconnect"] in log
        assert ["subscription-manager", "unregister"] not in log
        assert not target.guest_path("/etc/lvm/devices/system.devices").exists()
        devices_gone_at = next(i for i, c in enumerate(log) if c[0] == "dracut")
        assert log[devices_gone_at] == ["dracut", "-f", "--regenerate-all"]
    if claim.name == "rhel-8.10":
        assert ["insights-client", "--unregister"] in log
        assert ["subscription-manager", "unregister"] in log
    if claim.name.startswith("rhel"):
        assert not target.guest_path("/etc/insights-client/.registered").exists()
        assert ["subscription-manager", "clean"] in log
        assert not list(target.guest_path("/etc/pki/entitlement").glob("*.pem"))


def _assert_suse_deprovisioned(claim: Claim, target: NspawnTarget, log: list[list[str]]) -> None:
    """zypper cleaned; a BYOS system deregistered by SUSEConnect, PAYG by registercloudguest."""
    tools = _tools(log)
    assert ["zypper", "--non-interactive", "clean", "--all"] in log
    assert not target.guest_path("/etc/zypp/credentials.d/SCCcredentials").exists()
    if claim.name == "sles-15.5":  # BYOS
        assert ["instance-flavor-check"] in log
        assert ["SUSEConnect", "--de-register"] in log
        assert ["SUSEConnect", "--cleanup"] in log
        assert "registercloudguest" not in tools
    if claim.name == "sles-15.5-payg":
        # registercloudguest --clean only: SUSEConnect refuses -d next to it.
        assert ["registercloudguest", "--clean"] in log
        assert "SUSEConnect" not in tools
        assert "susecloud.net" not in target.guest_path("/etc/hosts").read_text()
        assert not list(target.guest_path("/etc/zypp/services.d").glob("*.service"))


def _assert_network_and_subscriptions_left(
    claim: Claim, target: NspawnTarget, log: list[list[str]]
) -> None:
    """resolv.conf still a link, no RPM tools on Debian rows, netplan checked, pro detached."""
    tools = _tools(log)
    if claim.family in ("suse", "ubuntu"):
        # The resolv.conf symlink survives waagent's deprovision (restored if deleted).
        link = guest_path(target.root, "/etc/resolv.conf", follow_last=False)
        assert link.is_symlink()
    if claim.family in ("debian", "ubuntu"):
        assert not (set(tools) & {"dnf", "zypper", "restorecon", "subscription-manager"})
    if claim.family == "ubuntu":
        assert ["netplan", "get", "ethernets"] in log
        assert not target.guest_path("/etc/netplan/50-cloud-init.yaml").exists()
        assert target.guest_path("/etc/netplan/01-network-manager-all.yaml").exists()
    if claim.name == "ubuntu-24.04":
        assert ["pro", "detach", "--assume-yes"] in log
        assert not target.guest_path(
            "/var/lib/ubuntu-advantage/private/machine-token.json"
        ).exists()


def _assert_waagent_completed_on_rhel(claim: Claim, target: NspawnTarget) -> None:
    """waagent ran every action: root locked, its state gone, no ifcfg leftovers (item 1)."""
    g = target.guest_path
    root_line = next(
        line for line in g("/etc/shadow").read_text().splitlines() if line.startswith("root:")
    )
    assert root_line.split(":")[1] == "*LOCK*", root_line
    # fileutil.rm_dirs empties waagent's lib dir and keeps the directory
    assert not list(g("/var/lib/waagent").iterdir())
    scripts = g("/etc/sysconfig/network-scripts")
    for ifcfg in scripts.glob("ifcfg-*"):
        text = ifcfg.read_text()
        assert "DHCP_HOSTNAME" not in text, (ifcfg, text)
        assert "imageprep: placeholder" not in text, (ifcfg, text)
    if claim.profile.endswith("-9"):
        # keyfiles only: the placeholder waagent needed is gone again
        assert not (scripts / "ifcfg-tgt0").exists()
    else:
        assert "DEVICE=tgt0" in (scripts / "ifcfg-tgt0").read_text()


def test_sles_without_public_cloud_module_is_refused(
    images: Callable[[Claim], TargetImage], tmp_path: Path
) -> None:
    """azure-ready stops before installing anything when SLES lacks the Public Cloud Module."""
    claim = SLES_WITHOUT_PUBLIC_CLOUD_MODULE
    with NspawnTarget(images(claim), prepare=claim.prepare) as target:
        before = len(calls(target.root))
        ready = imageprep(
            "run",
            *key_args(target),
            "--playbook",
            "azure-ready",
            "--backup",
            f"archive:{tmp_path / 'backup'}",
            run_dir=tmp_path / "ready",
        )
        # 3: azure-ready's own preflight phase failed, nothing on the VM was changed.
        assert ready.exit_code == 3, ready.stderr[-2000:]
        failed = [s for s in ready.report["steps"] if s["status"] == "failed"]
        assert [s["name"] for s in failed] == ["public-cloud-module-active"]
        assert "SUSEConnect -p sle-module-public-cloud/15.5/x86_64" in failed[0]["stderr_tail"]
        log = _since(calls(target.root), before)
        assert ["SUSEConnect", "--status"] in log
        assert "zypper" not in _tools(log)


def test_sles_byos_with_cloud_client_deregisters_with_it(
    images: Callable[[Claim], TargetImage], tmp_path: Path
) -> None:
    """A BYOS image with registercloudguest installed is cleaned by it, not by SUSEConnect -d."""
    claim = SLES_BYOS_WITH_CLOUD_CLIENT
    with NspawnTarget(images(claim), prepare=claim.prepare) as target:
        before = len(calls(target.root))
        result = imageprep(
            "run",
            *key_args(target),
            "--backup",
            f"archive:{tmp_path / 'backup'}",
            run_dir=tmp_path / "run",
        )
        target.wait_stopped(60)
        _ok(result, "generalize")
        log = _since(calls(target.root), before)
        assert ["registercloudguest", "--clean"] in log
        assert not [c for c in log if c[0] == "SUSEConnect"], log
        assert not target.guest_path("/etc/zypp/credentials.d/SCCcredentials").exists()


def test_sles_payg_without_cloud_client_is_refused_in_preflight(
    images: Callable[[Claim], TargetImage], tmp_path: Path
) -> None:
    """check refuses a pay-as-you-go image that has no registercloudguest to deregister it."""
    claim = SLES_PAYG_WITHOUT_CLOUD_CLIENT
    with NspawnTarget(images(claim), prepare=claim.prepare) as target:
        check = imageprep("check", *key_args(target), run_dir=tmp_path / "check")
        assert check.exit_code == 3, check.stderr[-2000:]
        step = check.step("preflight/registration-flavor-known")
        assert step["status"] == "failed"
        assert "registercloudguest" in step["stderr_tail"]


def test_unparsable_netplan_fails_azure_ready_verification(
    images: Callable[[Claim], TargetImage], tmp_path: Path
) -> None:
    """A netplan file the real netplan rejects fails azure-ready's verification, named."""
    claim = UBUNTU_UNPARSABLE_NETPLAN
    with NspawnTarget(images(claim), prepare=claim.prepare) as target:
        ready = imageprep(
            "run",
            *key_args(target),
            "--playbook",
            "azure-ready",
            "--backup",
            f"archive:{tmp_path / 'backup'}",
            run_dir=tmp_path / "ready",
        )
        step = ready.step("azure-verify/netplan-config-valid")
        assert step["status"] == "failed", step
        assert "netplan rejects the configuration" in step["stderr_tail"], step
        assert "60-bond.yaml" in step["stderr_tail"], step
        assert ready.exit_code == 5, ready.stderr[-2000:]


def _assert_not_deprovisioned(target: NspawnTarget, machine_id: str) -> None:
    assert target.guest_path("/etc/machine-id").read_text() == machine_id
    assert target.guest_path("/var/lib/waagent/ovf-env.xml").exists()
    assert list(target.guest_path("/etc/ssh").glob("ssh_host_*"))
    passwd = target.guest_path("/etc/passwd").read_text()
    assert re.search(rf"^{target.user}:", passwd, re.MULTILINE)


def _owned_by_root(path: Path, mode: int | None = None) -> None:
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (0, 0), f"{path} is owned by {st.st_uid}:{st.st_gid}"
    assert not st.st_mode & 0o022, f"{path} is writable by group or others"
    if mode is not None:
        assert st.st_mode & 0o7777 == mode, f"{path} has mode {oct(st.st_mode)}"


def _assert_ready_files(claim: Claim, target: NspawnTarget) -> None:
    """What azure-ready leaves on every distribution, then what it leaves on this one's."""
    _assert_agent_files(claim, target)
    if claim.family in ("debian", "ubuntu"):
        _assert_debian_boot_files(target)
    if claim.family == "ubuntu":
        _assert_ubuntu_network_files(target)
    if claim.family in ("rhel", "suse"):
        _assert_dracut_and_grub_files(target)
    if claim.family == "rhel":
        _assert_rhel_files(claim, target)
    if claim.family == "suse":
        _assert_suse_files(target)


def _assert_agent_files(claim: Claim, target: NspawnTarget) -> None:
    """waagent.conf, cloud-init's Azure drop-ins, the swap file and the enabled agent."""
    g = target.guest_path
    conf = g("/etc/waagent.conf").read_text()
    active = [line for line in conf.splitlines() if line and not line.lstrip().startswith("#")]
    assert "Provisioning.Agent=cloud-init" in active
    assert "ResourceDisk.Format=n" in active
    assert "ResourceDisk.EnableSwap=n" in active
    assert not [
        line
        for line in active
        if line.startswith(("Provisioning.Enabled", "Provisioning.UseCloudInit"))
    ]
    _owned_by_root(g("/etc/waagent.conf"), 0o644)

    datasource = g("/etc/cloud/cloud.cfg.d/91-azure_datasource.cfg").read_text()
    assert datasource.startswith("#cloud-config\n")
    assert "datasource_list: [ Azure ]" in datasource
    network = "false" if claim.family == "rhel" else "true"
    assert f"apply_network_config: {network}" in datasource
    kvp = g("/etc/cloud/cloud.cfg.d/10-azure-kvp.cfg").read_text()
    assert "\nreporting:\n" in kvp
    assert "Reporting" not in kvp
    for name in ("91-azure_datasource.cfg", "10-azure-kvp.cfg"):
        _owned_by_root(g(f"/etc/cloud/cloud.cfg.d/{name}"), 0o644)

    fstab = g("/etc/fstab").read_text()
    assert "#imageprep-azure-ready: /swapfile none swap sw 0 0" in fstab
    assert not g("/swapfile").exists()

    agent = "walinuxagent" if claim.family in ("debian", "ubuntu") else "waagent"
    wants = f"/etc/systemd/system/multi-user.target.wants/{agent}.service"
    assert guest_path(target.root, wants, follow_last=False).is_symlink()


def _assert_debian_boot_files(target: NspawnTarget) -> None:
    """grub's drop-in and real grub.cfg, the Hyper-V modules in initramfs-tools' list."""
    g = target.guest_path
    dropin = g("/etc/default/grub.d/99-imageprep-azure.cfg")
    _owned_by_root(dropin, 0o644)
    grub_cfg = g("/boot/grub/grub.cfg").read_text()
    # Written by Debian's real grub-mkconfig, from its /etc/grub.d scripts.
    assert "### BEGIN /etc/grub.d/10_linux ###" in grub_cfg
    entries = [line for line in grub_cfg.splitlines() if line.split()[:1] == ["linux"]]
    assert entries, grub_cfg
    for line in entries:
        words = line.split()
        assert all(c in words for c in CONSOLE), line
        assert "quiet" not in words, line
        assert "console=tty0" not in words, line
    assert "terminal_output serial console" in grub_cfg
    modules = g("/etc/initramfs-tools/modules").read_text().split()
    assert {"hv_vmbus", "hv_netvsc", "hv_storvsc"} <= set(modules)


def _assert_ubuntu_network_files(target: NspawnTarget) -> None:
    """The netplan files tied to the build VM are gone; the renderer's stays."""
    g = target.guest_path
    assert not g("/etc/netplan/00-installer-config.yaml").exists()
    assert not g("/etc/netplan/50-cloud-init.yaml").exists()  # bound to a MAC
    assert g("/etc/netplan/01-network-manager-all.yaml").exists()
    assert not g("/etc/cloud/cloud.cfg.d/subiquity-disable-cloudinit-networking.cfg").exists()


def _assert_dracut_and_grub_files(target: NspawnTarget) -> None:
    """dracut's driver list (in the real initrds, by the real lsinitrd) and grub's defaults."""
    g = target.guest_path
    assert (
        g("/etc/dracut.conf.d/azure.conf").read_text()
        == 'add_drivers+=" hv_vmbus hv_netvsc hv_storvsc "\n'
    )
    # Real dracut images, listed by the real lsinitrd inside the target.
    initrds = sorted(p.name for p in g("/boot").glob("initrd.img-*"))
    assert initrds
    for name in initrds:
        listing = run(target.ssh_command("sudo", "/usr/bin/lsinitrd", f"/boot/{name}"))
        assert all(f"/{m}.ko" in listing for m in ("hv_vmbus", "hv_netvsc", "hv_storvsc")), listing[
            :2000
        ]
    default = g("/etc/default/grub").read_text()
    cmdline = re.search(r'^GRUB_CMDLINE_LINUX="(.*)"$', default, re.MULTILINE)
    assert cmdline, default
    assert all(c in cmdline.group(1).split() for c in CONSOLE), default
    assert 'GRUB_TERMINAL="serial console"' in default
    assert "rhgb" not in default
    assert " quiet" not in default


def _assert_rhel_files(claim: Claim, target: NspawnTarget) -> None:
    """BLS entries, NetworkManager's unmanaged devices, eth0 as keyfile or ifcfg."""
    g = target.guest_path
    for entry in g("/boot/loader/entries").glob("*.conf"):
        options = next(
            line for line in entry.read_text().splitlines() if line.startswith("options ")
        )
        words = options.split()
        assert all(c in words for c in (*CONSOLE, "net.ifnames=0")), options
        assert "rhgb" not in words
        assert "quiet" not in words
        assert "console=tty0" not in words
        assert "crashkernel=1G-4G:192M,4G-64G:256M" in words  # not ours: kept
    assert "blscfg" in g("/boot/grub2/grub.cfg").read_text()
    nm_conf = g("/etc/NetworkManager/conf.d/99-azure-unmanaged-devices.conf")
    assert "unmanaged-devices=driver:mlx4_core;driver:mlx5_core;driver:mana" in nm_conf.read_text()
    if claim.profile.endswith("-9"):
        words = g("/etc/kernel/cmdline").read_text().split()
        assert all(c in words for c in (*CONSOLE, "net.ifnames=0")), words
        assert not {"rhgb", "quiet", "console=tty0"} & set(words), words
        assert "crashkernel=1G-4G:192M,4G-64G:256M" in words  # not ours: kept
        keyfile = g("/etc/NetworkManager/system-connections/eth0.nmconnection")
        _owned_by_root(keyfile, 0o600)
        assert "interface-name=eth0" in keyfile.read_text()
        assert (
            "mac-address"
            not in g("/etc/NetworkManager/system-connections/ens192.nmconnection").read_text()
        )
    else:
        ifcfg = g("/etc/sysconfig/network-scripts/ifcfg-eth0")
        _owned_by_root(ifcfg, 0o644)
        assert "BOOTPROTO=dhcp" in ifcfg.read_text()
        assert "HWADDR" not in g("/etc/sysconfig/network-scripts/ifcfg-ens192").read_text()


def _assert_suse_files(target: NspawnTarget) -> None:
    """grub without BLS, wicked's ifcfg and dhcp, sudoers without targetpw."""
    g = target.guest_path
    assert "blscfg" not in g("/boot/grub2/grub.cfg").read_text()
    suse_ifcfg = g("/etc/sysconfig/network/ifcfg-eth0").read_text()
    assert "LLADDR" not in suse_ifcfg
    assert "BOOTPROTO='dhcp'" in suse_ifcfg
    assert 'DHCLIENT_SET_HOSTNAME="no"' in g("/etc/sysconfig/network/dhcp").read_text().splitlines()
    sudoers = g("/etc/sudoers")
    text = sudoers.read_text()
    assert "#imageprep-azure-ready: Defaults targetpw" in text
    assert "\nALL ALL=(ALL) ALL" not in text
    _owned_by_root(sudoers, 0o440)


def _assert_ready_calls(claim: Claim, log: list[list[str]]) -> None:
    tools = _tools(log)
    if claim.family == "debian":
        assert ["update-grub"] in log
        assert not (set(tools) & {"dnf", "zypper", "dracut", "grubby", "apt-get"})
    if claim.family == "ubuntu":
        installs = [c for c in log if c[:2] == ["apt-get", "install"]]
        # Only what is missing: the Ubuntu variant has cloud-init and Debian's real
        # netplan.io, not Ubuntu's walinuxagent.
        assert len(installs) == 1, installs
        assert installs[0][:4] == ["apt-get", "install", "-y", "--no-install-recommends"]
        assert "walinuxagent" in installs[0][4:], installs
        assert not {"cloud-init", "netplan.io"} & set(installs[0][4:]), installs
        assert ["update-grub"] in log
        # The real netplan read what is left (netplan-config-valid).
        assert ["netplan", "get", "ethernets"] in log
    if claim.family == "rhel":
        assert [
            "dnf",
            "install",
            "-y",
            "WALinuxAgent",
            "cloud-utils-growpart",
            "hyperv-daemons",
        ] in log
        assert ["dracut", "-f", "--regenerate-all"] in log
        mkconfig = [c for c in log if c[0] == "grub2-mkconfig"]
        assert mkconfig == [["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]], mkconfig
        updates = [c for c in log if c[0] == "grubby" and c[1].startswith("--update-kernel=")]
        assert len(updates) == 1, updates
        assert updates[0][1] == "--update-kernel=ALL", updates
        assert updates[0][2] == "--remove-args=rhgb quiet console=tty0", updates
        assert updates[0][3] == "--args=" + " ".join((*CONSOLE, "net.ifnames=0")), updates
        assert tools.index("dracut") < tools.index("grub2-mkconfig") < tools.index("restorecon")
        assert [c for c in log if c[0] == "restorecon"][-1][:2] == ["restorecon", "-R"]
    if claim.family == "suse":
        assert [
            "zypper",
            "--non-interactive",
            "install",
            "--no-recommends",
            "python-azure-agent",
        ] in log
        assert ["mkinitrd"] in log
        assert ["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"] in log
        assert not (set(tools) & {"grubby", "restorecon", "dracut"})


def test_matrix_covers_every_linux_profile() -> None:
    """Every concrete Linux profile has a row in the matrix."""
    from agent.catalog import Catalog

    catalog = Catalog.load()
    linux = {p.id for p in catalog.profiles() if not p.abstract and p.platform == "linux"}
    assert linux == {c.profile for c in CLAIMS}


def test_waagent_failure_with_exit_code_0_fails_the_step(
    target_image: TargetImage, tmp_path: Path
) -> None:
    """waagent 2.12 (Debian 13) logs "Failed to run" and exits 0 when an action raises
    (here: no ifcfg file, the placeholder step skipped): the step fails all the same."""
    claim = next(c for c in CLAIMS if c.name == "rhel-9.4")
    assert claim.suite == "trixie"
    with NspawnTarget(_image(claim, target_image), prepare=claim.prepare) as target:
        result = imageprep(
            "run",
            *key_args(target),
            "--backup",
            f"archive:{tmp_path / 'backup'}",
            "--skip",
            "waagent-ifcfg-placeholder",
            run_dir=tmp_path / "run",
        )
        step = result.step("deprovision/waagent-deprovision")
        assert step["status"] == "failed", step
        assert "waagent reported a failure (exit code 0)" in step["message"], step
        assert "Failed to run 'deprovision+user'" in step["message"], step
        assert result.exit_code == 6
