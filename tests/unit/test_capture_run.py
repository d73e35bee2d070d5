# ruff: noqa: F811  (pytest fixtures imported from test_windows_run are parameters here)
"""`imageprep run --platform/--capture` end to end: the Windows double, the fake of ARM.

The real CLI, runner and engine generalize the Windows test double (tests.winrm_server);
the real azure-mgmt-compute client then asks the fake of ARM (tests.arm_fake), whose VM's
power state follows the double's, for the power state and makes the image.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agent.cli import main
from agent.outcome import ExitCode
from agent.platforms import azure as azure_platform
from agent.provenance import EVIDENCE_FILE
from tests.arm_fake import FakeArm, FakeTokenCredential

# The Windows runs' fixtures, shared (pytest finds them by name in this module).
from tests.unit.test_windows_run import (  # noqa: F401
    Run,
    accounts,
    imageprep_run,
    machine,
    server,
    tls,
)
from tests.winrm_server import TlsFiles, WindowsMachine, WinRmTestServer
from tests.winrm_server import machine as win

SUB = "00000000-0000-4000-8000-00000000abcd"
GROUP = f"/subscriptions/{SUB}/resourceGroups/golden-rg/providers/Microsoft.Compute"
VM_ID = f"{GROUP}/virtualMachines/golden-vm"
DEFINITION = f"{GROUP}/galleries/gold/images/winsrv"
VERSION = f"{DEFINITION}/versions/1.2.3"


@pytest.fixture
def arm(
    tls: TlsFiles, machine: WindowsMachine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeArm]:
    """The fake of ARM with the double as its VM; --platform azure: pointed at it."""
    fake = FakeArm(SUB, in_progress_polls=1)
    fake.add_vm("golden-rg", "golden-vm", data_disk_luns=(), os_type="Windows")
    fake.power_sources[VM_ID.lower()] = lambda: (
        "PowerState/running" if machine.powered_on else "PowerState/stopped"
    )
    fake.add_gallery_image("golden-rg", "gold", "winsrv", os_type="Windows")
    options = {"operation_timeout": 3600.0}
    fake.client_options = options  # type: ignore[attr-defined]
    with fake.serving(tls):

        def from_arg(arg: str) -> azure_platform.AzurePlatform:
            return azure_platform.AzurePlatform(
                azure_platform.parse_arg(arg),
                credential=FakeTokenCredential(),
                endpoint=fake.endpoint,
                connection_verify=str(tls.ca_cert),
                polling_interval=0.01,
                operation_timeout=options["operation_timeout"],
            )

        monkeypatch.setattr(azure_platform, "from_arg", from_arg)
        yield fake


def _journal(run: Run) -> list[dict[str, Any]]:
    lines = (run.run_dir / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _events(run: Run, name: str) -> list[dict[str, Any]]:
    return [e for e in _journal(run) if e["event"] == name]


def _evidence_sha256(run: Run) -> str:
    return hashlib.sha256((run.run_dir / EVIDENCE_FILE).read_bytes()).hexdigest()


def test_power_off_is_confirmed_by_the_platform(
    server: WinRmTestServer,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """After the shutdown ARM is asked: result.json and the journal hold PowerState/stopped."""
    run = imageprep_run(server, tls, tmp_path, "--platform", f"azure:{VM_ID}")
    assert run.result.exit_code == ExitCode.OK, run.result.output
    report = run.report
    assert report["power_state"] == "PowerState/stopped"
    assert report["platform"]["vm_id"] == VM_ID  # type: ignore[index]
    (event,) = _events(run, "power_state_confirmed")
    assert event["power_state"] == "PowerState/stopped"
    assert arm.requests_to("GET", "/instanceView$")
    assert not arm.requests_to("POST", "/deallocate$")  # no capture asked: nothing changed


def test_vm_that_comes_back_up_is_exit_6(
    server: WinRmTestServer,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """ARM says running after stopping: exit 6, saying specialize may have run."""
    arm.power_sources.clear()
    arm.set_power(VM_ID, "PowerState/stopping", "PowerState/running")
    run = imageprep_run(server, tls, tmp_path, "--platform", f"azure:{VM_ID}")
    assert run.result.exit_code == ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN, run.result.output
    report = run.report
    assert "came back up" in str(report["message"])
    assert "specialize pass may have run" in str(report["message"])
    assert report["exit_code"] == 6


def test_capture_makes_the_gallery_version_and_records_it(
    server: WinRmTestServer,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """--capture gallery: deallocate, generalize, version made; its id in result and journal."""
    run = imageprep_run(
        server,
        tls,
        tmp_path,
        "--platform",
        f"azure:{VM_ID}",
        "--capture",
        f"gallery:{VERSION}?regions=westeurope:2,northeurope&storage=Standard_ZRS"
        "&exclude-from-latest=true",
    )
    assert run.result.exit_code == ExitCode.OK, run.result.output
    version = arm.gallery_versions[VERSION.lower()]
    assert version["properties"]["provisioningState"] == "Succeeded"
    assert version["properties"]["storageProfile"]["source"]["virtualMachineId"] == VM_ID
    publishing = version["properties"]["publishingProfile"]
    assert publishing["excludeFromLatest"] is True
    assert publishing["storageAccountType"] == "Standard_ZRS"
    assert [(r["name"], r.get("regionalReplicaCount")) for r in publishing["targetRegions"]] == [
        ("westeurope", 2),
        ("northeurope", None),
    ]
    report = run.report
    assert version["tags"] == {
        "imageprep-run-id": report["run_id"],
        "imageprep-profile": "windows-server",
        "imageprep-playbook": "generalize",
        "imageprep-result-sha256": _evidence_sha256(run),
    }
    capture = report["capture"]
    assert capture["image_id"] == VERSION  # type: ignore[index]
    assert capture["provisioning_state"] == "Succeeded"  # type: ignore[index]
    assert [s["step"] for s in capture["steps"]] == [  # type: ignore[index]
        "deallocated",
        "generalized",
        "creating",
        "created",
    ]
    (finished,) = _events(run, "capture_finished")
    assert finished["image_id"] == VERSION
    assert VM_ID.lower() in arm.generalized
    assert arm.power_state(VM_ID) == "PowerState/deallocated"


def test_tagged_hash_names_the_verified_generalization_record(
    server: WinRmTestServer,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """The frozen record the image's sha256 tag points at shows the verified, confirmed run."""
    run = imageprep_run(
        server, tls, tmp_path, "--platform", f"azure:{VM_ID}", "--capture", f"gallery:{VERSION}"
    )
    assert run.result.exit_code == ExitCode.OK, run.result.output
    evidence = json.loads((run.run_dir / EVIDENCE_FILE).read_text())
    assert evidence["run_id"] == run.report["run_id"]
    verify = [s for s in evidence["steps"] if s["phase"] == "verify"]
    assert verify
    assert {s["status"] for s in verify} == {"ok"}
    assert evidence["power_state"] == "PowerState/stopped"
    assert evidence.get("capture") is None


def test_definition_mismatch_is_exit_2_before_anything_changes(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """A Gen1 definition for a Gen2 VM: exit 2 naming hyperVGeneration; no step, no backup."""
    arm.add_gallery_image("golden-rg", "gold", "gen1", os_type="Windows", hyper_v_generation="V1")
    run = imageprep_run(
        server,
        tls,
        tmp_path,
        "--platform",
        f"azure:{VM_ID}",
        "--capture",
        f"gallery:{DEFINITION.replace('winsrv', 'gen1')}/versions/1.0.0",
    )
    assert run.result.exit_code == ExitCode.USAGE, run.result.output
    assert "hyperVGeneration: image definition gen1 says V1" in str(run.report["message"])
    assert machine.sysprep_runs == []
    assert run.report["backup"] is None
    assert all(r.method == "GET" for r in arm.requests)


def test_no_capture_after_a_failed_generalize(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """A failed run (a pending reboot, exit 3): nothing is deallocated, generalized or made."""
    machine.create_key(win.PENDING_REBOOT_KEYS[0])
    run = imageprep_run(
        server, tls, tmp_path, "--platform", f"azure:{VM_ID}", "--capture", f"gallery:{VERSION}"
    )
    assert run.result.exit_code == ExitCode.PREFLIGHT_FAILED, run.result.output
    assert not arm.requests_to("POST", ".")
    assert not arm.requests_to("PUT", ".")
    assert "capture" not in run.report


def test_capture_without_verification_is_refused_up_front(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """--capture with the verify phase deselected is exit 2 before the VM changes."""
    run = imageprep_run(
        server,
        tls,
        tmp_path,
        "--platform",
        f"azure:{VM_ID}",
        "--capture",
        f"gallery:{VERSION}",
        "--skip",
        "verify/image-state-generalized,verify/sysprep-tag-present,"
        "verify/setup-type-generalized,verify/setuperr-clean",
    )
    assert run.result.exit_code == ExitCode.USAGE, run.result.output
    assert "no verify step will run" in str(run.report["message"])
    assert machine.sysprep_runs == []


def test_capture_spec_for_another_vm_is_refused(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """A capture spec meant for another VM: exit 2, nothing contacted or changed."""
    other = VM_ID.replace("golden-vm", "other-vm")
    run = imageprep_run(
        server,
        tls,
        tmp_path,
        "--platform",
        f"azure:{VM_ID}",
        "--capture",
        f"gallery:{VERSION}?vm={other}",
    )
    assert run.result.exit_code == ExitCode.USAGE, run.result.output
    assert f"meant for VM {other}" in run.result.output
    assert machine.sysprep_runs == []
    assert arm.requests == []


def test_resume_after_a_capture_cut_short_adopts_the_version(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """A version still Creating when the run gave up: --resume adopts it, never a second PUT."""
    arm.slow_jobs["version"] = 10**6  # ARM keeps the version Creating while the run watches
    arm.client_options["operation_timeout"] = 0.5  # type: ignore[attr-defined]
    run = imageprep_run(
        server, tls, tmp_path, "--platform", f"azure:{VM_ID}", "--capture", f"gallery:{VERSION}"
    )
    assert run.result.exit_code == ExitCode.PLATFORM_FAILED, run.result.output
    assert "did not finish within 0.5 s" in str(run.report["message"])
    assert [s["step"] for s in run.report["capture"]["steps"]][-1] == "creating"  # type: ignore[index]
    arm.slow_jobs["version"] = 0  # ARM finishes it
    resumed = CliRunner().invoke(
        main,
        [
            "run",
            "--resume",
            str(run.run_dir),
            "--password-env",
            "WINPASS",
            "--ca-cert",
            str(tls.ca_cert),
            "--log-format",
            "json",
        ],
    )
    assert resumed.exit_code == ExitCode.OK, resumed.output
    report = json.loads((run.run_dir / "result.json").read_text())
    assert report["capture"]["adopted"] is True
    assert report["capture"]["provisioning_state"] == "Succeeded"
    assert len(arm.requests_to("PUT", "/versions/")) == 1
    assert len(machine.sysprep_runs) == 1  # the VM was not contacted again


@pytest.fixture
def libvirt_domain(machine: WindowsMachine) -> Iterator[str]:
    """A domain on libvirt's test driver that shuts off when the double powers off."""
    import threading

    import libvirt

    conn = libvirt.open("test:///default")
    name = f"golden-{uuid.uuid4().hex[:8]}"
    dom = conn.defineXML(
        f"<domain type='test'><name>{name}</name><memory>131072</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    dom.create()
    stop = threading.Event()

    def follow_the_double() -> None:
        while not stop.wait(0.01):
            if not machine.powered_on and dom.isActive():
                dom.destroy()

    watcher = threading.Thread(target=follow_the_double, daemon=True)
    watcher.start()
    yield name
    stop.set()
    watcher.join()
    if dom.isActive():
        dom.destroy()
    for snapshot in dom.listAllSnapshots():
        snapshot.delete()
    dom.undefine()
    conn.close()


def test_libvirt_backup_implies_the_platform(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path, libvirt_domain: str
) -> None:
    """--backup libvirt:DOM: the same domain is asked after shutdown; "shut off" recorded."""
    run = imageprep_run(
        server, tls, tmp_path, backup=f"libvirt:{libvirt_domain}?uri=test:///default"
    )
    assert run.result.exit_code == ExitCode.OK, run.result.output
    report = run.report
    assert report["power_state"] == "shut off"
    assert report["platform"]["spec"] == (  # type: ignore[index]
        f"libvirt:{libvirt_domain}?uri=test%3A%2F%2F%2Fdefault"
    )


def test_libvirt_capture_is_refused_before_anything_changes(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    libvirt_domain: str,
) -> None:
    """--capture with a libvirt platform: exit 2 pointing at imageprep vhd; VM untouched."""
    run = imageprep_run(
        server,
        tls,
        tmp_path,
        "--platform",
        f"libvirt:{libvirt_domain}?uri=test:///default",
        "--capture",
        f"image:{GROUP}/images/x",
    )
    assert run.result.exit_code == ExitCode.USAGE, run.result.output
    assert "imageprep vhd" in str(run.report["message"])
    assert machine.sysprep_runs == []


def _resume(run: Run, tls: TlsFiles, *extra: str) -> Result:
    return CliRunner().invoke(
        main,
        [
            "run",
            "--resume",
            str(run.run_dir),
            "--password-env",
            "WINPASS",
            "--ca-cert",
            str(tls.ca_cert),
            "--log-format",
            "json",
            *extra,
        ],
    )


def test_resume_after_an_unconfirmed_power_off_asks_again(
    server: WinRmTestServer,
    machine: WindowsMachine,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
) -> None:
    """Still stopping at the deadline (exit 12); --resume asks ARM again, without connecting."""
    arm.power_sources.clear()
    arm.set_power(VM_ID, "PowerState/stopping")
    platform = f"azure:{VM_ID}?power-off-timeout=0.3"
    run = imageprep_run(server, tls, tmp_path, "--platform", platform)
    assert run.result.exit_code == ExitCode.PLATFORM_FAILED, run.result.output
    arm.set_power(VM_ID, "PowerState/stopped")
    resumed = _resume(run, tls)
    assert resumed.exit_code == ExitCode.OK, resumed.output
    report = json.loads((run.run_dir / "result.json").read_text())
    assert report["power_state"] == "PowerState/stopped"
    assert len(_events(run, "power_state_confirmed")) == 1
    assert len(_events(run, "platform_failed")) == 1
    assert len(machine.sysprep_runs) == 1


def test_resume_refuses_a_new_capture_spec(
    server: WinRmTestServer, tls: TlsFiles, tmp_path: Path, arm: FakeArm
) -> None:
    """--capture with --resume is exit 2: the journal holds the run's own."""
    run = imageprep_run(server, tls, tmp_path, "--platform", f"azure:{VM_ID}")
    resumed = _resume(run, tls, "--capture", f"gallery:{VERSION}")
    assert resumed.exit_code == ExitCode.USAGE
    assert "--capture cannot be given with it" in resumed.output


def test_azure_snapshot_backup_implies_the_platform_for_capture(
    server: WinRmTestServer,
    tls: TlsFiles,
    tmp_path: Path,
    arm: FakeArm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--backup azure-snapshot:VM and --capture, no --platform: snapshot, confirm, version."""
    from agent.backups import azure_snapshot

    monkeypatch.setattr(
        azure_snapshot,
        "from_arg",
        lambda arg: azure_snapshot.AzureSnapshotProvider(
            azure_snapshot.parse_arg(arg),
            credential=FakeTokenCredential(),
            endpoint=arm.endpoint,
            connection_verify=str(tls.ca_cert),
            polling_interval=0.01,
        ),
    )
    run = imageprep_run(
        server,
        tls,
        tmp_path,
        "--capture",
        f"gallery:{VERSION}",
        backup=f"azure-snapshot:{VM_ID}",
    )
    assert run.result.exit_code == ExitCode.OK, run.result.output
    report = run.report
    assert report["backup"]["provider"] == "azure-snapshot"  # type: ignore[index]
    assert report["power_state"] == "PowerState/stopped"
    assert report["capture"]["image_id"] == VERSION  # type: ignore[index]
    assert len(arm.snapshots) == 1
