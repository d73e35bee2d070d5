"""Capturing an Azure VM: the real azure-mgmt-compute client against the fake of ARM."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.capture import CaptureTarget, parse_capture
from agent.cli import main
from agent.errors import CaptureMismatch, PlatformError, UsageError
from agent.outcome import ExitCode, exit_code_for_error
from agent.platforms import azure as azure_platform
from agent.platforms.azure import AzurePlatform, parse_arg
from agent.platforms.base import CaptureRecord
from tests.arm_fake import FakeArm, FakeTokenCredential
from tests.arm_fake.server import Fault
from tests.winrm_server.certs import TlsFiles, make_tls_files

SUB = "00000000-0000-4000-8000-00000000abcd"
GROUP = f"/subscriptions/{SUB}/resourceGroups/golden-rg/providers/Microsoft.Compute"
VM_ID = f"{GROUP}/virtualMachines/golden-vm"
DEFINITION = f"{GROUP}/galleries/gold/images/debian"
VERSION = f"{DEFINITION}/versions/1.0.0"
IMAGE = f"{GROUP}/images/golden-image"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1, made by the test."""
    return make_tls_files(tmp_path_factory.mktemp("arm-tls"))


@pytest.fixture
def arm(tls: TlsFiles) -> Iterator[FakeArm]:
    """A stopped, generalized-in-the-guest Gen2 Linux VM and a matching image definition."""
    fake = FakeArm(SUB, in_progress_polls=1)
    fake.add_vm("golden-rg", "golden-vm", data_disk_luns=())
    fake.set_power(VM_ID, "PowerState/stopped")
    fake.add_gallery_image("golden-rg", "gold", "debian")
    with fake.serving(tls):
        yield fake


def _platform(arm: FakeArm, tls: TlsFiles, vm_id: str = VM_ID) -> AzurePlatform:
    return AzurePlatform(
        parse_arg(vm_id),
        credential=FakeTokenCredential(),
        endpoint=arm.endpoint,
        connection_verify=str(tls.ca_cert),
        polling_interval=0.01,
    )


def _capture(
    arm: FakeArm, tls: TlsFiles, spec: str, *, run_id: str = "r1", replace: bool = False
) -> tuple[CaptureRecord, list[str]]:
    steps: list[str] = []
    on_step: Callable[[str, Mapping[str, str]], None] = lambda step, _: steps.append(step)  # noqa: E731
    record = _platform(arm, tls).capture(
        parse_capture(spec, replace_version=replace),
        run_id=run_id,
        tags={"imageprep-run-id": run_id},
        on_step=on_step,
    )
    return record, steps


def _changes(arm: FakeArm) -> list[str]:
    return [f"{r.method} {r.path}" for r in arm.requests if r.method != "GET"]


# --- gallery versions ----------------------------------------------------------------------


def test_gallery_version_is_made_after_deallocate_and_generalize(
    arm: FakeArm, tls: TlsFiles
) -> None:
    """Deallocate (LRO), generalize, then the version (LRO) is Succeeded and recorded."""
    record, steps = _capture(arm, tls, f"gallery:{VERSION}")
    assert steps == ["deallocated", "generalized", "creating", "created"]
    assert record.image_id == VERSION
    assert record.kind == "gallery-image-version"
    assert record.provisioning_state == "Succeeded"
    assert record.details["gallery_image_id"] == DEFINITION
    assert [c.split(" ")[0] + " " + c.rsplit("/", 1)[-1] for c in _changes(arm)] == [
        "POST deallocate",
        "POST generalize",
        "PUT 1.0.0",
    ]
    assert arm.requests_to("GET", "/operations/")  # each LRO followed through its status


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"os_type": "Windows"}, "osType: image definition other says Windows"),
        ({"os_state": "Specialized"}, "osState: image definition other says Specialized"),
        ({"hyper_v_generation": "V1"}, "hyperVGeneration: image definition other says V1"),
        ({"hyper_v_generation": None}, "hyperVGeneration: image definition other says V1"),
        ({"architecture": "Arm64"}, "architecture: image definition other says Arm64"),
        ({"security_type": "TrustedLaunch"}, "securityType: image definition other says Trusted"),
    ],
)
def test_definition_that_does_not_fit_is_exit_2_naming_the_field(
    arm: FakeArm, tls: TlsFiles, definition: dict[str, str | None], field: str
) -> None:
    """Each property compared with the VM, before anything changes."""
    arm.add_gallery_image("golden-rg", "gold", "other", **definition)  # type: ignore[arg-type]
    with pytest.raises(CaptureMismatch, match=field) as caught:
        _capture(arm, tls, f"gallery:{DEFINITION.replace('debian', 'other')}/versions/1.0.0")
    assert exit_code_for_error(caught.value) is ExitCode.USAGE
    assert _changes(arm) == []


def test_trusted_launch_vm_fits_a_trusted_launch_supported_definition(
    arm: FakeArm, tls: TlsFiles
) -> None:
    """A Trusted Launch VM into a TrustedLaunchSupported definition is captured."""
    arm.add_vm("golden-rg", "tl-vm", data_disk_luns=(), security_type="TrustedLaunch")
    tl_vm = VM_ID.replace("golden-vm", "tl-vm")
    arm.set_power(tl_vm, "PowerState/stopped")
    arm.add_gallery_image("golden-rg", "gold", "tl", security_type="TrustedLaunchSupported")
    record = _platform(arm, tls, tl_vm).capture(
        parse_capture(f"gallery:{DEFINITION.replace('debian', 'tl')}/versions/1.0.0"),
        run_id="r1",
        tags={},
        on_step=lambda step, fields: None,
    )
    assert record.provisioning_state == "Succeeded"


def test_existing_version_is_exit_2(arm: FakeArm, tls: TlsFiles) -> None:
    """A version made by someone else is refused, naming --replace-version."""
    _capture(arm, tls, f"gallery:{VERSION}", run_id="earlier")
    before = len(_changes(arm))
    with pytest.raises(CaptureMismatch, match=r"already exists.*made by run earlier.*--replace"):
        _capture(arm, tls, f"gallery:{VERSION}", run_id="r2")
    assert len(_changes(arm)) == before


def test_replace_version_deletes_then_makes_it_again(arm: FakeArm, tls: TlsFiles) -> None:
    """--replace-version: the old version is deleted (LRO) and the new one made."""
    _capture(arm, tls, f"gallery:{VERSION}", run_id="earlier")
    record, steps = _capture(arm, tls, f"gallery:{VERSION}", run_id="r2", replace=True)
    assert "deleted" in steps
    assert arm.requests_to("DELETE", "/versions/1.0.0$")
    assert arm.gallery_versions[VERSION.lower()]["tags"]["imageprep-run-id"] == "r2"
    assert record.adopted is False


def test_this_runs_version_is_adopted_not_made_twice(arm: FakeArm, tls: TlsFiles) -> None:
    """The same run capturing again (a resume) adopts its version: no second PUT."""
    _capture(arm, tls, f"gallery:{VERSION}", run_id="r1")
    record, steps = _capture(arm, tls, f"gallery:{VERSION}", run_id="r1")
    assert record.adopted is True
    assert steps == ["adopted"]
    assert len(arm.requests_to("PUT", "/versions/")) == 1


def test_failed_operation_is_exit_12_with_arms_error(arm: FakeArm, tls: TlsFiles) -> None:
    """The version's LRO ending Failed is a PlatformError carrying ARM's code."""
    arm.fail_jobs["version"] = ("ReplicationFailed", "Replication to northeurope failed.")
    with pytest.raises(PlatformError, match="ReplicationFailed") as caught:
        _capture(arm, tls, f"gallery:{VERSION}")
    assert exit_code_for_error(caught.value) is ExitCode.PLATFORM_FAILED


def test_failed_version_of_this_run_is_made_again(arm: FakeArm, tls: TlsFiles) -> None:
    """A version this run made that Failed is deleted and made again, still one version."""
    arm.fail_jobs["version"] = ("ReplicationFailed", "Replication failed.")
    with pytest.raises(PlatformError):
        _capture(arm, tls, f"gallery:{VERSION}")
    del arm.fail_jobs["version"]
    record, steps = _capture(arm, tls, f"gallery:{VERSION}")
    assert "deleted" in steps
    assert record.provisioning_state == "Succeeded"
    assert len(arm.gallery_versions) == 1


def test_forbidden_deallocate_names_the_action(arm: FakeArm, tls: TlsFiles) -> None:
    """A 403 names the ARM action refused; the VM was not generalized."""
    arm.denied_actions.add("Microsoft.Compute/virtualMachines/deallocate/action")
    with pytest.raises(PlatformError) as caught:
        _capture(arm, tls, f"gallery:{VERSION}")
    assert "refused action Microsoft.Compute/virtualMachines/deallocate/action" in str(caught.value)
    assert "403 AuthorizationFailed" in str(caught.value)
    assert VM_ID.lower() not in arm.generalized


def test_running_vm_is_refused_before_anything_changes(arm: FakeArm, tls: TlsFiles) -> None:
    """A VM that is running is not captured (it was not shut down after generalizing)."""
    arm.set_power(VM_ID, "PowerState/running")
    with pytest.raises(PlatformError, match="is PowerState/running, not stopped"):
        _capture(arm, tls, f"gallery:{VERSION}")
    assert _changes(arm) == []


def test_throttled_put_and_failing_poll_are_retried(arm: FakeArm, tls: TlsFiles) -> None:
    """429 with Retry-After on the PUT and a 500 on a status poll: retried, then Succeeded."""
    arm.faults.append(Fault("PUT", "/versions/", 429, retry_after=1))
    arm.faults.append(Fault("GET", "/operations/", 500))
    record, _ = _capture(arm, tls, f"gallery:{VERSION}")
    assert record.provisioning_state == "Succeeded"
    assert len(arm.requests_to("PUT", "/versions/")) == 2


def test_target_regions_must_include_the_gallerys(arm: FakeArm, tls: TlsFiles) -> None:
    """regions= without the gallery's own region: exit 2 before anything changes."""
    with pytest.raises(CaptureMismatch, match="must include the gallery's region westeurope"):
        _capture(arm, tls, f"gallery:{VERSION}?regions=northeurope")
    # Checked with the definition, before the VM is deallocated or generalized.
    assert _changes(arm) == []


# --- managed images ------------------------------------------------------------------------


def test_managed_image_is_made(arm: FakeArm, tls: TlsFiles) -> None:
    """image:… makes a managed image from the VM in its region, Gen2 kept."""
    record, steps = _capture(arm, tls, f"image:{IMAGE}")
    assert record.kind == "managed-image"
    assert record.image_id == IMAGE
    image = arm.images[IMAGE.lower()]
    assert image["properties"]["sourceVirtualMachine"]["id"] == VM_ID
    assert image["properties"]["hyperVGeneration"] == "V2"
    assert image["location"] == "westeurope"
    assert steps[-1] == "created"


def test_trusted_launch_vm_cannot_be_a_managed_image(arm: FakeArm, tls: TlsFiles) -> None:
    """Managed images do not support Trusted Launch: exit 2 naming securityType."""
    arm.add_vm("golden-rg", "tl-vm", data_disk_luns=(), security_type="TrustedLaunch")
    tl_vm = VM_ID.replace("golden-vm", "tl-vm")
    arm.set_power(tl_vm, "PowerState/stopped")
    with pytest.raises(CaptureMismatch, match="securityType: VM tl-vm is TrustedLaunch"):
        _platform(arm, tls, tl_vm).check_capture(parse_capture(f"image:{IMAGE}"), run_id="r1")


# --- parsing -------------------------------------------------------------------------------


def test_gallery_spec_options_are_parsed() -> None:
    """regions, replicas, storage and exclude-from-latest are read from the query."""
    target = parse_capture(
        f"gallery:{VERSION}?regions=westeurope:2,northeurope&replicas=1"
        "&storage=Standard_ZRS&exclude-from-latest=true"
    )
    assert isinstance(target, CaptureTarget)
    assert [(r.name, r.replicas) for r in target.regions] == [
        ("westeurope", 2),
        ("northeurope", None),
    ]
    assert (target.replicas, target.storage_account_type) == (1, "Standard_ZRS")
    assert target.exclude_from_latest is True
    assert target.resource_id == VERSION


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("snapshot:/x", "expected gallery:"),
        (f"gallery:{DEFINITION}/versions/1.2", "not MAJOR.MINOR.PATCH"),
        (f"gallery:{DEFINITION}/versions/v1.2.3", "not MAJOR.MINOR.PATCH"),
        (f"gallery:{VERSION}?storage=Hot", "storage='Hot' is not one of"),
        (f"gallery:{VERSION}?regions=west europe", "expected REGION"),
        (f"gallery:{VERSION}?regions=westeurope:0", "not a replica count"),
        (f"gallery:{VERSION}?exclude-from-latest=maybe", "not true or false"),
        (f"image:{IMAGE}?regions=westeurope", "unknown option regions"),
    ],
)
def test_bad_capture_spec_is_a_usage_error(spec: str, message: str) -> None:
    """A wrong --capture fails before anything is contacted, saying what is wrong."""
    with pytest.raises(UsageError, match=message):
        parse_capture(spec)


# --- imageprep capture ---------------------------------------------------------------------


@pytest.fixture
def patched(arm: FakeArm, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> FakeArm:
    """--platform azure: builds a platform pointed at the fake."""
    monkeypatch.setattr(
        azure_platform, "from_arg", lambda arg: _platform(arm, tls, parse_arg(arg).vm_id)
    )
    return arm


def test_capture_command_records_the_ids(patched: FakeArm, tmp_path: Path) -> None:
    """imageprep capture: exit 0, the version's id in result.json and the journal."""
    run_dir = tmp_path / "cap"
    result = CliRunner().invoke(
        main,
        [
            "capture",
            f"gallery:{VERSION}",
            "--platform",
            f"azure:{VM_ID}",
            "--run-dir",
            str(run_dir),
        ],
    )
    assert result.exit_code == ExitCode.OK, result.output
    assert f"captured {VERSION}" in result.output
    report = json.loads((run_dir / "result.json").read_text())
    assert report["capture"]["image_id"] == VERSION
    assert report["exit_code"] == 0
    events = [json.loads(x) for x in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events][-2:] == ["capture_finished", "capture_command_finished"]
    version = patched.gallery_versions[VERSION.lower()]
    assert version["tags"]["imageprep-run-id"] == report["run_id"]


def test_capture_command_mismatch_is_exit_2_with_a_report(patched: FakeArm, tmp_path: Path) -> None:
    """A definition that does not fit: exit 2, one line naming the field, report written."""
    patched.add_gallery_image("golden-rg", "gold", "win", os_type="Windows")
    run_dir = tmp_path / "cap"
    result = CliRunner().invoke(
        main,
        [
            "capture",
            f"gallery:{DEFINITION.replace('debian', 'win')}/versions/1.0.0",
            "--platform",
            f"azure:{VM_ID}",
            "--run-dir",
            str(run_dir),
        ],
    )
    assert result.exit_code == ExitCode.USAGE
    assert "osType: image definition win says Windows" in result.output
    assert "Traceback" not in result.output
    assert json.loads((run_dir / "result.json").read_text())["exit_code"] == 2
    assert _changes(patched) == []


def test_capture_command_for_another_vm_is_refused(patched: FakeArm, tmp_path: Path) -> None:
    """vm= naming another VM than --platform: exit 2 before anything is contacted."""
    other = VM_ID.replace("golden-vm", "other")
    result = CliRunner().invoke(
        main, ["capture", f"gallery:{VERSION}?vm={other}", "--platform", f"azure:{VM_ID}"]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "meant for VM" in result.output
    assert patched.requests == []
