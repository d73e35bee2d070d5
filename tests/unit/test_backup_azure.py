"""azure-snapshot: the real azure-mgmt-compute client against a local fake of ARM over HTTPS."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.backups import BackupContext, provider_from_spec
from agent.backups.azure_snapshot import AzureSnapshotProvider, parse_arg, snapshot_name
from agent.errors import BackupError, UsageError
from agent.provenance import TAG_RUN_ID
from agent.targets import Target
from tests.arm_fake import FakeArm, FakeTokenCredential, Principal
from tests.local_executor import LocalShellExecutor
from tests.winrm_server.certs import TlsFiles, make_tls_files

SUB = "00000000-0000-4000-8000-00000000abcd"
VM_ID = (
    f"/subscriptions/{SUB}/resourceGroups/golden-rg/providers/Microsoft.Compute/"
    "virtualMachines/golden-vm"
)
TARGET = Target(scheme="ssh", user="azureuser", host="golden-vm.example", port=22)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1, made by the test."""
    return make_tls_files(tmp_path_factory.mktemp("arm-tls"))


@pytest.fixture
def arm(tls: TlsFiles) -> Iterator[FakeArm]:
    """The fake of ARM, serving one VM with an OS disk and data disks at LUN 0 and 1."""
    fake = FakeArm(SUB)
    fake.add_vm("golden-rg", "golden-vm", zones=["2"])
    fake.resource_groups.add("snapshots-rg")
    with fake.serving(tls):
        yield fake


def _provider(
    arm: FakeArm, tls: TlsFiles, options: str = "", bearer: str = "fake-arm-token"
) -> tuple[AzureSnapshotProvider, FakeTokenCredential]:
    credential = FakeTokenCredential(bearer)
    provider = AzureSnapshotProvider(
        parse_arg(VM_ID + options),
        credential=credential,
        endpoint=arm.endpoint,
        connection_verify=str(tls.ca_cert),
        polling_interval=0.01,
    )
    return provider, credential


def _context(tmp_path: Path, run_id: str = "r42") -> BackupContext:
    return BackupContext(run_id=run_id, target=TARGET, paths=(), run_dir=tmp_path)


# --- success -----------------------------------------------------------------------------


def test_os_disk_snapshot_id_is_the_reference(arm: FakeArm, tls: TlsFiles, tmp_path: Path) -> None:
    """One snapshot of the OS disk exists in ARM, and its id is the record's reference."""
    provider, _ = _provider(arm, tls)
    record = provider.take(LocalShellExecutor(), _context(tmp_path))
    assert list(arm.snapshots) == [record.reference.lower()]
    snapshot = arm.snapshots[record.reference.lower()]
    assert snapshot["properties"]["provisioningState"] == "Succeeded"
    os_disk = arm.vms[VM_ID.lower()]["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
    assert snapshot["properties"]["creationData"]["sourceResourceId"] == os_disk
    assert record.provider == "azure-snapshot"
    assert record.details["os_snapshot"] == record.reference
    assert record.details["snapshot_ids"] == record.reference
    assert record.reference.endswith("-imageprep-r42")


def test_snapshot_is_incremental_and_tagged_with_the_run_id(
    arm: FakeArm, tls: TlsFiles, tmp_path: Path
) -> None:
    """The PUT asks for an incremental copy of the disk, tagged with the run id."""
    provider, _ = _provider(arm, tls)
    provider.take(LocalShellExecutor(), _context(tmp_path, "run0815"))
    (put,) = arm.requests_to("PUT", "/snapshots/")
    assert put.body["properties"]["incremental"] is True
    assert put.body["properties"]["creationData"]["createOption"] == "Copy"
    assert put.body["location"] == "westeurope"
    assert put.body["tags"][TAG_RUN_ID] == "run0815"
    (snapshot,) = arm.snapshots.values()
    assert snapshot["tags"][TAG_RUN_ID] == "run0815"


def test_long_running_operation_is_polled_until_succeeded(
    arm: FakeArm, tls: TlsFiles, tmp_path: Path
) -> None:
    """The SDK follows Azure-AsyncOperation: InProgress twice, then Succeeded, then GETs it."""
    provider, _ = _provider(arm, tls)
    provider.take(LocalShellExecutor(), _context(tmp_path))
    polls = arm.requests_to("GET", "/DiskOperations/")
    assert len(polls) == 3
    assert all("monitor" not in p.query for p in polls)  # Azure-AsyncOperation, not Location
    methods = [(r.method, r.path.rsplit("/", 2)[-2]) for r in arm.requests]
    assert methods[0] == ("GET", "virtualMachines")
    assert methods[1] == ("PUT", "snapshots")
    assert methods[-1] == ("GET", "snapshots")  # the final state: the resource itself


def test_every_request_carries_the_bearer_token(
    arm: FakeArm, tls: TlsFiles, tmp_path: Path
) -> None:
    """The SDK's auth policy asks the credential for ARM's scope and sends the token."""
    provider, credential = _provider(arm, tls)
    provider.take(LocalShellExecutor(), _context(tmp_path))
    assert {r.authorization for r in arm.requests} == {"Bearer fake-arm-token"}
    assert set(credential.scopes) == {("https://management.azure.com/.default",)}
    assert all(r.query.get("api-version") for r in arm.requests)


def test_data_disks_are_snapshotted_with_the_option(
    arm: FakeArm, tls: TlsFiles, tmp_path: Path
) -> None:
    """data-disks=true snapshots the OS disk and every data disk, each id recorded."""
    provider, _ = _provider(arm, tls, "?data-disks=true")
    record = provider.take(LocalShellExecutor(), _context(tmp_path))
    ids = record.details["snapshot_ids"].splitlines()
    assert len(ids) == 3
    assert {i.lower() for i in ids} == set(arm.snapshots)
    assert ids[0] == record.reference == record.details["os_snapshot"]
    assert record.details["lun0_snapshot"].endswith("/snapshots/golden-vm-data0-imageprep-r42")
    assert record.details["lun1_snapshot"].endswith("/snapshots/golden-vm-data1-imageprep-r42")
    roles = sorted(s["tags"]["imageprep-disk-role"] for s in arm.snapshots.values())
    assert roles == ["lun0", "lun1", "os"]


def test_full_snapshots_in_another_resource_group(
    arm: FakeArm, tls: TlsFiles, tmp_path: Path
) -> None:
    """incremental=false and resource-group=RG2 give a full snapshot created in RG2."""
    provider, _ = _provider(arm, tls, "?incremental=false&resource-group=snapshots-rg")
    record = provider.take(LocalShellExecutor(), _context(tmp_path))
    assert "/resourceGroups/snapshots-rg/" in record.reference
    (put,) = arm.requests_to("PUT", "/snapshots/")
    assert put.body["properties"]["incremental"] is False
    assert record.details["incremental"] == "false"


def test_restore_hint_swaps_in_disks_made_from_the_snapshots(
    arm: FakeArm, tls: TlsFiles, tmp_path: Path
) -> None:
    """The hint creates disks from the snapshots, swaps the OS disk and re-attaches LUNs."""
    provider, _ = _provider(arm, tls, "?data-disks=true")
    record = provider.take(LocalShellExecutor(), _context(tmp_path))
    steps = record.restore_hint.split(" && ")
    group = f"--subscription {SUB} -g golden-rg"
    assert steps[0].startswith(f"az disk create {group} -n golden-vm_OsDisk_1_")
    assert f"--source {record.reference} -l westeurope --sku Premium_LRS --zone 2" in steps[0]
    assert steps[3] == f"az vm deallocate {group} -n golden-vm"
    assert steps[4].startswith(f"az vm update {group} -n golden-vm --os-disk golden-vm_OsDisk_1_")
    assert steps[5] == f"az vm disk detach {group} --vm-name golden-vm -n golden-vm-data0"
    assert steps[6] == (
        f"az vm disk attach {group} --vm-name golden-vm -n golden-vm-data0-imageprep-r42 --lun 0"
    )
    assert steps[-1] == f"az vm start {group} -n golden-vm"


def test_wall_time_against_the_fake(arm: FakeArm, tls: TlsFiles, tmp_path: Path) -> None:
    """OS + 2 data disks, 3 polls each, through real TLS: well under a second here."""
    provider, _ = _provider(arm, tls, "?data-disks=true")
    started = time.monotonic()
    record = provider.take(LocalShellExecutor(), _context(tmp_path))
    elapsed = time.monotonic() - started
    print(f"azure-snapshot wall time against the fake of ARM: {elapsed:.3f} s")
    assert record.duration <= elapsed < 5.0


# --- failures ----------------------------------------------------------------------------


def test_credential_without_snapshot_rights_is_a_one_line_error(
    arm: FakeArm, tls: TlsFiles, tmp_path: Path
) -> None:
    """403 AuthorizationFailed on the PUT: one line naming the group, nothing created."""
    arm.tokens["reader-token"] = Principal(may_write_snapshots=False)
    provider, _ = _provider(arm, tls, bearer="reader-token")
    with pytest.raises(BackupError) as caught:
        provider.take(LocalShellExecutor(), _context(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("azure-snapshot: the Azure credential may not create snapshot ")
    assert "in resource group golden-rg (403 AuthorizationFailed)" in message
    assert "Microsoft.Compute/snapshots/write" in message
    assert arm.snapshots == {}


def test_missing_vm_names_it(arm: FakeArm, tls: TlsFiles, tmp_path: Path) -> None:
    """404 on the VM: the error names the VM and its group; no snapshot is attempted."""
    provider = AzureSnapshotProvider(
        parse_arg(VM_ID.replace("golden-vm", "no-such-vm")),
        credential=FakeTokenCredential(),
        endpoint=arm.endpoint,
        connection_verify=str(tls.ca_cert),
    )
    with pytest.raises(BackupError, match=r"virtual machine no-such-vm does not exist .*404"):
        provider.take(LocalShellExecutor(), _context(tmp_path))
    assert arm.requests_to("PUT", ".") == []


def test_missing_resource_group_names_it(arm: FakeArm, tls: TlsFiles, tmp_path: Path) -> None:
    """404 ResourceGroupNotFound says the group, not the VM, is missing."""
    provider = AzureSnapshotProvider(
        parse_arg(VM_ID.replace("golden-rg", "gone-rg")),
        credential=FakeTokenCredential(),
        endpoint=arm.endpoint,
        connection_verify=str(tls.ca_cert),
    )
    with pytest.raises(BackupError, match="resource group gone-rg does not exist"):
        provider.take(LocalShellExecutor(), _context(tmp_path))


def test_rejected_token_is_an_authentication_error(
    arm: FakeArm, tls: TlsFiles, tmp_path: Path
) -> None:
    """A token ARM does not accept (401) fails the backup as an authentication problem."""
    provider, _ = _provider(arm, tls, bearer="expired-token")
    with pytest.raises(BackupError, match="Azure authentication failed"):
        provider.take(LocalShellExecutor(), _context(tmp_path))


def test_failed_operation_names_arm_error(arm: FakeArm, tls: TlsFiles, tmp_path: Path) -> None:
    """An operation that ends "Failed" is a backup error, not a recorded snapshot."""
    arm.fail_operations = ("InternalDiskManagementError", "An internal error occurred.")
    provider, _ = _provider(arm, tls)
    with pytest.raises(
        BackupError, match="azure-snapshot: could not snapshot disk golden-vm_OsDisk"
    ) as caught:
        provider.take(LocalShellExecutor(), _context(tmp_path))
    assert "\n" not in str(caught.value)


# --- ARG and registry ---------------------------------------------------------------------


def test_arg_options_are_parsed() -> None:
    """data-disks, incremental and resource-group options; ARM ids are case-insensitive."""
    spec = parse_arg(
        VM_ID.replace("resourceGroups", "resourcegroups")
        + "?data-disks=yes&incremental=false&resource-group=rg2"
    )
    assert (spec.subscription, spec.resource_group, spec.vm_name) == (SUB, "golden-rg", "golden-vm")
    assert spec.data_disks is True
    assert spec.incremental is False
    assert spec.target_group == "rg2"


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("golden-rg/golden-vm", "expected the VM's resource id"),
        (VM_ID.replace(SUB, "my-sub"), "not a subscription id"),
        (VM_ID + "?data-disk=true", "unknown option data-disk"),
        (VM_ID + "?incremental=maybe", "is not true or false"),
    ],
)
def test_bad_arg_is_a_usage_error(arg: str, message: str) -> None:
    """A wrong ARG fails before anything is contacted, saying what was expected."""
    with pytest.raises(UsageError, match=message):
        provider_from_spec(f"azure-snapshot:{arg}")


def test_spec_selects_the_azure_provider() -> None:
    """azure-snapshot:VM_ID gives the Azure provider, described without contacting Azure."""
    provider = provider_from_spec(f"azure-snapshot:{VM_ID}")
    assert isinstance(provider, AzureSnapshotProvider)
    assert "incremental snapshots of the OS disk of VM golden-vm" in provider.describe()


def test_snapshot_names_follow_arm_rules() -> None:
    """Snapshot names keep only ARM's allowed characters and stay within 80 characters."""
    name = snapshot_name("disk.with.dots" + "x" * 100, "ab12cd34")
    assert len(name) == 80
    assert name.endswith("-imageprep-ab12cd34")
    assert "." not in name


def test_missing_azure_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without azure-mgmt-compute installed, the scheme says which pip extra to install."""
    monkeypatch.setitem(sys.modules, "azure.mgmt.compute", None)
    monkeypatch.delitem(sys.modules, "agent.backups.azure_snapshot")
    with pytest.raises(UsageError, match=r"pip install 'imageprep-agent\[azure\]'"):
        provider_from_spec(f"azure-snapshot:{VM_ID}")
