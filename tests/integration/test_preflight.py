"""Preflight on real targets: a busy package manager stops the run with the VM untouched."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.cli_run import CliResult, imageprep, key_args
from tests.integration.conftest import TargetFactory
from tests.targets.guestpath import guest_path
from tests.targets.nspawn import NspawnTarget

pytestmark = pytest.mark.integration

PREFLIGHT_FAILED = 3


def _no_waiting_profile(directory: Path) -> list[str]:
    """A user profile that overrides the built-in debian one: the check does not retry.

    The built-in step waits out a short apt-daily run (3 retries, 10 s apart); the test
    only needs its verdict.
    """
    directory.mkdir()
    (directory / "debian.yaml").write_text(
        "id: debian\n"
        "description: Debian without waiting for apt\n"
        "extends: debian\n"
        "match: {ids: [debian], version: '>=11'}\n"
        "phases:\n"
        "  preflight:\n"
        "    - name: no-package-manager-running\n"
        "      override: true\n"
        "      retries: 0\n"
    )
    return ["--profiles-dir", str(directory)]


def _in_target(target: NspawnTarget, *command: str) -> None:
    """Start a command as a transient unit inside the target; it keeps running."""
    # ssh hands the remote shell one command line: quote it ourselves.
    remote = shlex.join(["sudo", "systemd-run", "--quiet", "--collect", *command])
    subprocess.run(
        target.ssh_command(remote),
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _as_root(target: NspawnTarget, command: str, stdin: str = "") -> None:
    """Run a shell command as root in the target and wait for it."""
    subprocess.run(
        target.ssh_command(shlex.join(["sudo", "sh", "-c", command])),
        input=stdin.encode(),
        check=True,
    )


def _check(target: NspawnTarget, tmp_path: Path, *extra: str) -> CliResult:
    profile = _no_waiting_profile(tmp_path / "profiles")
    return imageprep("check", *key_args(target), *profile, *extra, run_dir=tmp_path / "run")


def test_held_dpkg_lock_fails_preflight(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A process holding dpkg's lock is named and the check exits 3."""
    target = target_factory()
    _in_target(target, "flock", "/var/lib/dpkg/lock-frontend", "sleep", "300")
    result = _check(target, tmp_path)
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert "holds /var/lib/dpkg/lock-frontend" in result.report["message"]


def test_running_dpkg_fails_preflight(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A process called dpkg is named and the check exits 3."""
    target = target_factory()
    _in_target(target, "/bin/sh", "-c", "cp /bin/sleep /run/dpkg && exec /run/dpkg 300")
    result = _check(target, tmp_path)
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert "a package manager is running: dpkg" in result.report["message"]


def test_idle_target_passes_the_check(target_factory: TargetFactory, tmp_path: Path) -> None:
    """With nothing running, the same check passes (the two tests above are not vacuous)."""
    target = target_factory()
    result = _check(target, tmp_path)
    assert result.exit_code == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    "conf",
    [
        # What CIS benchmarks write for udf; merged /usr spells the program's path longer.
        "install udf /bin/false\nblacklist udf\n",
        "install vfat /usr/bin/true\n",
    ],
    ids=["cis-udf", "merged-usr-vfat"],
)
def test_disabled_udf_or_vfat_fails_preflight(
    target_factory: TargetFactory, tmp_path: Path, conf: str
) -> None:
    """A hardened VM whose clones could not provision is refused; the file is named."""

    def harden(root: Path) -> None:
        directory = guest_path(root, "/etc/modprobe.d")
        directory.mkdir(exist_ok=True)  # an image without kmod has none
        (directory / "cis-hardening.conf").write_text(conf)

    target = target_factory(prepare=harden)
    result = _check(target, tmp_path)
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert result.step("preflight/udf-vfat-not-disabled")["status"] == "failed"
    assert "/etc/modprobe.d/cis-hardening.conf:" in result.report["message"]


def _esp_with(*loaders: str) -> Callable[[Path], None]:
    """A target whose ESP, mounted at /boot/efi as Debian does, holds these loaders."""

    def install(root: Path) -> None:
        for loader in loaders:
            path = guest_path(root, f"/boot/efi/{loader}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"MZ")  # a PE image's first bytes; nothing reads further

    return install


REQUIRE_EFI_FALLBACK = ("--var", "require_efi_fallback=true")


def test_a_uefi_vm_without_the_fallback_loader_fails_preflight(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """Only EFI/debian/ (an install from ISO): a clone would not boot, so refused, with the fix."""
    target = target_factory(prepare=_esp_with("EFI/debian/shimx64.efi", "EFI/debian/grubx64.efi"))
    result = _check(target, tmp_path, *REQUIRE_EFI_FALLBACK)
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert result.step("preflight/efi-fallback-present")["status"] == "failed"
    message = result.report["message"]
    assert "/boot/efi/EFI/BOOT/BOOTX64.EFI is missing" in message
    assert "grub-install --removable" in message


def test_the_fallback_loader_is_found_whatever_its_case(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """FAT ignores case, and firmware too: efi/boot/bootx64.efi is the fallback loader."""
    target = target_factory(prepare=_esp_with("EFI/debian/grubx64.efi", "efi/boot/bootx64.efi"))
    result = _check(target, tmp_path, *REQUIRE_EFI_FALLBACK)
    assert result.exit_code == 0, result.stderr[-2000:]
    shown = result.step("preflight/efi-fallback-present")["stdout_tail"]
    assert "UEFI fallback loader present: /boot/efi/efi/boot/bootx64.efi" in shown


def test_a_vm_booted_by_bios_needs_no_fallback_loader(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """Without /sys/firmware/efi (these targets) and without the var, nothing is required."""
    target = target_factory(prepare=_esp_with("EFI/debian/grubx64.efi"))
    result = _check(target, tmp_path)
    assert result.exit_code == 0, result.stderr[-2000:]
    shown = result.step("preflight/efi-fallback-present")["stdout_tail"]
    assert "booted by BIOS: no UEFI fallback loader needed" in shown


def test_requiring_the_fallback_without_an_esp_fails_preflight(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """Asked to check, and no ESP with a loader mounted: refused, not passed."""
    target = target_factory()
    result = _check(target, tmp_path, *REQUIRE_EFI_FALLBACK)
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert "no EFI system partition with a boot loader" in result.report["message"]


def test_root_password_waagent_keeps_fails_preflight(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """A root password waagent would leave (DeleteRootPassword=n) fails preflight, named."""
    target = target_factory()
    _as_root(target, "chpasswd", stdin="root:golden-vm-root-password\n")
    _as_root(
        target,
        "sed -i 's/^Provisioning.DeleteRootPassword=y$/Provisioning.DeleteRootPassword=n/'"
        " /etc/waagent.conf",
    )
    result = _check(target, tmp_path)
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert result.step("preflight/root-password-not-shared")["status"] == "failed"
    assert "Provisioning.DeleteRootPassword is False" in result.report["message"]


# Ways a VM is left with cloud-init off while Debian's waagent.conf (Provisioning.Agent=
# cloud-init) leaves provisioning to it, each with what the refusal names.
_CLOUD_INIT_OFF = {
    "marker-file": ("touch /etc/cloud/cloud-init.disabled", "/etc/cloud/cloud-init.disabled"),
    "kernel-cmdline": (
        "echo 'GRUB_CMDLINE_LINUX=\"console=ttyS0 cloud-init=disabled\"' > /etc/default/grub",
        "/etc/default/grub has cloud-init=disabled",
    ),
    "unit-disabled": (
        "systemctl disable --quiet cloud-init-local.service",
        "cloud-init-local.service is disabled",
    ),
}


@pytest.mark.parametrize("way", sorted(_CLOUD_INIT_OFF))
def test_cloud_init_off_while_it_should_provision_fails_preflight(
    target_factory: TargetFactory, tmp_path: Path, way: str
) -> None:
    """cloud-init off but waagent waiting for it: no clone would provision, so refused."""
    command, named = _CLOUD_INIT_OFF[way]
    target = target_factory()
    _as_root(target, command)
    result = _check(target, tmp_path)
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert result.step("preflight/cloud-init-not-disabled")["status"] == "failed"
    assert named in result.report["message"]


def test_cloud_init_off_passes_when_waagent_provisions(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """The same marker file with Provisioning.Agent=waagent is a working image: it passes."""
    target = target_factory()
    _as_root(
        target,
        "touch /etc/cloud/cloud-init.disabled && sed -i"
        " 's/^Provisioning.Agent=cloud-init$/Provisioning.Agent=waagent/' /etc/waagent.conf",
    )
    result = _check(target, tmp_path)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert (
        "Provisioning.Agent is waagent"
        in result.step("preflight/cloud-init-not-disabled")["stdout_tail"]
    )


# cloud-final's per-boot script, still running when the run starts: it ends 3 s after
# imageprep took its lock on the VM (rootshell.VM_LOCK_PATH) and writes when it ended.
_SLOW_FINAL_SCRIPT = """#!/bin/sh
while [ ! -e /run/imageprep-vm.lock ]; do sleep 0.1; done
sleep 3
date +%s.%N > /srv/final-ended
"""


def test_a_running_cloud_init_ends_before_cloud_init_clean(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """cloud-final still running as the run starts: preflight waits until it has ended."""
    target = target_factory()
    script = "/var/lib/cloud/scripts/per-boot/slow.sh"
    setup = (
        f"mkdir -p {shlex.quote(script.rsplit('/', 1)[0])}"
        f" && printf %s {shlex.quote(_SLOW_FINAL_SCRIPT)} > {script} && chmod +x {script}"
        # As on a VM that has just booted: the first stage removed result.json, and the
        # final stage (which writes it when it ends) is still running.
        " && rm /run/cloud-init/result.json"
        " && systemd-run --quiet --collect cloud-init modules --mode final"
    )
    _as_root(target, setup)
    result = imageprep(
        "run", *key_args(target), "--backup", f"archive:{tmp_path / 'b'}", run_dir=tmp_path / "run"
    )
    target.wait_stopped(60)
    assert result.exit_code == 0, result.stderr[-2000:]
    waited = result.step("preflight/cloud-init-finished")["stdout_tail"]
    assert "cloud-init is still running: waiting" in waited
    marker = target.guest_path("/srv/final-ended")
    assert marker.exists(), "cloud-final was still running when the VM powered off"
    ended = float(marker.read_text())
    clean = result.step("cleanup/cloud-init-clean")
    assert ended < datetime.fromisoformat(clean["started_at"]).timestamp()
