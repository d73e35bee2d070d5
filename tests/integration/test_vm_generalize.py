"""`imageprep run --boot-test` on real VMs (QEMU), Debian 12 and 13; the disk checked from outside.

One VM per suite, restored from the saved booted state: imageprep generalizes it with the real
debian profile, the guest powers itself off (QEMU exits, console `reboot: Power down`), then
`--boot-test` boots the generalized disk once as a new machine and `imageprep vhd` converts it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.boottest import fingerprint
from agent.disks.ext4 import Ext4Reader
from agent.disks.qemu import POWER_DOWN
from tests.integration.cli_run import IMAGEPREP, CliResult, imageprep
from tests.integration.vm_fixtures import VmImageFactory
from tests.targets.qemu import QemuTarget
from tests.targets.qemu_image import SUITES

pytestmark = pytest.mark.vm


@dataclass(frozen=True)
class VmRun:
    vm: QemuTarget
    result: CliResult
    powered_off: bool
    disk: Ext4Reader
    machine_id_before: str
    seconds: dict[str, float]

    @property
    def boot_test(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(
            (self.result.run_dir / "boot-test" / "result.json").read_text()
        )
        return loaded


def vm_args(vm: QemuTarget) -> list[str]:
    return [
        "--target",
        f"ssh://{vm.user}@{vm.host}:{vm.port}",
        "--identity",
        str(vm.key_path),
        "--known-hosts",
        str(vm.known_hosts_path),
    ]


@pytest.fixture(scope="module", params=SUITES)
def vm_run(
    request: pytest.FixtureRequest,
    vm_image_factory: VmImageFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[VmRun]:
    """One generalize + boot-test per suite, shared by the assertions below."""
    suite: str = request.param
    work = tmp_path_factory.mktemp(f"vm-{suite}")
    image = vm_image_factory(suite)
    started = time.monotonic()
    with QemuTarget(image) as vm:
        restored = time.monotonic() - started
        machine_id = subprocess.run(
            vm.ssh_command("cat", "/etc/machine-id"),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            stdin=subprocess.DEVNULL,
        ).stdout.strip()
        started = time.monotonic()
        result = imageprep(
            "run",
            *vm_args(vm),
            "--backup",
            f"archive:{work / 'backups'}",
            "--boot-test",
            "--boot-test-disk",
            str(vm.disk),
            "--boot-test-timeout",
            "600",
            run_dir=work / "run",
            timeout=1500,
        )
        total = time.monotonic() - started
        powered_off = vm.wait_powered_off(60)
        seconds = {
            "restore_to_ssh": round(vm.ready_after or 0, 2),
            "restore_total": round(restored, 2),
            "run_with_boot_test": round(total, 2),
        }
        print(f"\n[{suite}] timings: {seconds}")
        yield VmRun(vm, result, powered_off, vm.read_disk(), machine_id, seconds)


def test_run_with_boot_test_exits_0(vm_run: VmRun) -> None:
    """Generalize and the boot test both succeed."""
    assert vm_run.result.exit_code == 0, vm_run.result.stderr[-3000:] + vm_run.result.stdout
    assert vm_run.result.report["status"] == "succeeded"
    assert vm_run.result.report["boot_test"]["exit_code"] == 0


def test_guest_powered_itself_off(vm_run: VmRun) -> None:
    """QEMU exited 0 on its own, after the kernel's power-down, not because it was killed."""
    assert vm_run.powered_off, vm_run.vm.console_tail()
    assert vm_run.vm.vm.returncode == 0
    assert POWER_DOWN in vm_run.vm.console_log.read_text(errors="replace")
    assert vm_run.result.report["powered_off"] is True


def test_machine_id_empty(vm_run: VmRun) -> None:
    """/etc/machine-id on the disk is empty."""
    assert vm_run.machine_id_before
    assert vm_run.disk.read_text("/etc/machine-id") == ""


def test_ssh_host_keys_gone(vm_run: VmRun) -> None:
    """No SSH host key is left on the disk."""
    names = [e.name for e in vm_run.disk.listdir("/etc/ssh") or []]
    assert names
    assert not [n for n in names if n.startswith("ssh_host_")]


def test_login_user_and_home_gone(vm_run: VmRun) -> None:
    """The provisioned user is deleted with its home directory."""
    passwd = vm_run.disk.read_text("/etc/passwd") or ""
    assert not any(line.startswith(f"{vm_run.vm.user}:") for line in passwd.splitlines())
    assert not vm_run.disk.exists(f"/home/{vm_run.vm.user}")


def test_sudoers_line_gone(vm_run: VmRun) -> None:
    """No sudoers file still names the deleted user."""
    files = ["/etc/sudoers"] + [
        f"/etc/sudoers.d/{e.name}" for e in vm_run.disk.listdir("/etc/sudoers.d") or []
    ]
    assert not any(vm_run.vm.user in (vm_run.disk.read_text(f) or "") for f in files)


def test_cloud_init_and_waagent_state_gone(vm_run: VmRun) -> None:
    """cloud-init's instance state, its seed and waagent's ovf-env.xml are gone."""
    assert not vm_run.disk.exists("/var/lib/cloud/instance")
    assert not vm_run.disk.exists("/var/lib/cloud/seed")
    assert not vm_run.disk.exists("/var/lib/waagent/ovf-env.xml")


def test_histories_gone(vm_run: VmRun) -> None:
    """root's shell history is gone."""
    assert not vm_run.disk.exists("/root/.bash_history")


def test_boot_test_came_up_as_new_machine(vm_run: VmRun) -> None:
    """Every new-machine check passed, with a machine-id unlike the one before."""
    report = vm_run.boot_test
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "new_user_logs_in": "ok",
        "machine_id_new": "ok",
        "ssh_host_keys_new": "ok",
        "cloud_init_new_instance": "ok",
        "deprovisioned_user_absent": "ok",
    }
    assert report["after"]["machine_id"] not in ("", vm_run.machine_id_before)
    assert report["after"]["instance_id"] == report["boot"]["seed"]["instance_id"]


def test_boot_test_host_keys_are_new(vm_run: VmRun) -> None:
    """The booted clone's host keys are none of the image's old ones."""
    old = {
        fingerprint(" ".join(line.split()[1:3]))
        for line in vm_run.vm.known_hosts_path.read_text().splitlines()
    }
    new = set(vm_run.boot_test["after"]["ssh_host_keys"])
    assert len(old) == 3
    assert new
    assert not (new & old)


def test_boot_test_console_log_kept(vm_run: VmRun) -> None:
    """The clone's console log is kept in the boot-test folder, with the printed keys."""
    console = (vm_run.result.run_dir / "boot-test" / "console.log").read_text(errors="replace")
    assert "-----BEGIN SSH HOST KEY KEYS-----" in console


def test_vhd_of_boot_tested_disk(vm_run: VmRun, tmp_path: Path) -> None:
    """The boot-tested disk converts to a fixed VHD of a whole number of MiB."""
    out = tmp_path / "golden.vhd"
    proc = subprocess.run(
        [IMAGEPREP, "vhd", str(vm_run.vm.disk), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size == 2 * 1024**3 + 512
    assert "boot-test passed" in proc.stdout


def test_boot_test_time_out_is_exit_9_with_console_kept(vm_run: VmRun, tmp_path: Path) -> None:
    """A disk that is not up within --timeout: exit 9, one line, console log in the report."""
    proc = subprocess.run(
        [
            IMAGEPREP,
            "boot-test",
            str(vm_run.vm.disk),
            "--timeout",
            "8",
            "--run-dir",
            str(tmp_path / "bt"),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 9, proc.stderr
    message = json.loads(proc.stdout.splitlines()[-1])["message"]
    assert "did not come up within 8s" in message
    assert (tmp_path / "bt" / "console.log").stat().st_size > 0


def test_boot_test_refuses_an_image_that_is_not_generalized(
    vm_image_factory: VmImageFactory, tmp_path: Path
) -> None:
    """The cached, provisioned image itself is refused with exit 3 before any boot."""
    disk = vm_image_factory("bookworm").disk
    proc = subprocess.run(
        [
            IMAGEPREP,
            "boot-test",
            str(disk),
            "--run-dir",
            str(tmp_path / "bt"),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    message = json.loads(proc.stdout.splitlines()[-1])["message"]
    assert message.startswith(f"{disk} is not generalized: /etc/machine-id is set")
    assert not (tmp_path / "bt" / "console.log").exists()
