"""``azure-snapshot:VM_ID[?OPTIONS]`` — snapshot an Azure VM's managed disks through ARM.

ARG is the VM's Azure resource id (what ``az vm show --query id -o tsv`` prints), with
optional query options::

    azure-snapshot:/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM
        ?data-disks=true        also snapshot every managed data disk (default: OS disk only)
        &incremental=false      full snapshots (default: incremental)
        &resource-group=RG2     create the snapshots in RG2 (default: the VM's group)

Authentication is azure-identity's ``DefaultAzureCredential`` (environment, workload or
managed identity, ``az login``, ...), the HTTP work azure-mgmt-compute's client: both come
from the optional extra ``pip install 'imageprep-agent[azure]'`` and are imported only when
this scheme is used. All snapshots are started together, then each long-running operation
is followed to its end; a snapshot exists only once ARM says ``Succeeded``. Each is tagged
with the run id. The snapshots are crash-consistent per disk, not a multi-disk set.
"""

from __future__ import annotations

import re
import shlex
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
)
from azure.core.polling import LROPoller
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import Snapshot, VirtualMachine

from agent.backups.base import BackupContext, BackupRecord, utc_timestamp
from agent.errors import BackupError, UsageError
from agent.executors.base import Executor
from agent.provenance import TAG_RUN_ID

SCHEME = "azure-snapshot"
_SNAPSHOT_NAME_MAX = 80  # ARM: a-z, A-Z, 0-9, _ and -, at most 80 characters
_VM_ID = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Compute/virtualMachines/(?P<vm>[^/]+)/?",
    re.IGNORECASE,
)
_EXAMPLE = (
    "azure-snapshot:/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/"
    "virtualMachines/VM[?data-disks=true&incremental=false&resource-group=RG2]"
)
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass(frozen=True)
class AzureSnapshotSpec:
    """What ARG asks for, parsed and checked without contacting Azure."""

    subscription: str
    resource_group: str
    vm_name: str
    data_disks: bool = False
    incremental: bool = True
    snapshot_resource_group: str | None = None

    @property
    def vm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachines/{self.vm_name}"
        )

    @property
    def target_group(self) -> str:
        return self.snapshot_resource_group or self.resource_group


def _flag(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise UsageError(f"--backup {SCHEME}: {key}={value!r} is not true or false")


def parse_arg(arg: str) -> AzureSnapshotSpec:
    """The ARG after ``azure-snapshot:``, or UsageError showing the expected form."""
    path, _, query = arg.strip().partition("?")
    match = _VM_ID.fullmatch(path)
    if match is None:
        raise UsageError(
            f"--backup {SCHEME}:{arg}: expected the VM's resource id, {_EXAMPLE} "
            "(az vm show -g RG -n VM --query id -o tsv prints it)"
        )
    try:
        uuid.UUID(match["sub"])
    except ValueError:
        raise UsageError(
            f"--backup {SCHEME}: subscription {match['sub']!r} is not a subscription id (a GUID)"
        ) from None
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key == "data-disks":
            options["data_disks"] = _flag(key, value)
        elif key == "incremental":
            options["incremental"] = _flag(key, value)
        elif key == "resource-group" and value:
            options["snapshot_resource_group"] = value
        else:
            raise UsageError(
                f"--backup {SCHEME}: unknown option {key}={value!r} "
                "(known: data-disks=BOOL, incremental=BOOL, resource-group=NAME)"
            )
    return AzureSnapshotSpec(match["sub"], match["rg"], match["vm"], **options)


@dataclass(frozen=True)
class _Disk:
    """One managed disk of the VM and where it sits."""

    role: str  # "os" or "lun<N>"
    id: str
    name: str
    lun: int | None
    sku: str | None


def snapshot_name(disk_name: str, run_id: str) -> str:
    suffix = f"-imageprep-{run_id}"
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", disk_name)[: _SNAPSHOT_NAME_MAX - len(suffix)]
    return f"{stem}{suffix}"


def _disks(vm: VirtualMachine, spec: AzureSnapshotSpec) -> list[_Disk]:
    storage = vm.properties.storage_profile if vm.properties else None
    os_disk = storage.os_disk if storage else None
    if os_disk is None:
        raise BackupError(f"{SCHEME}: virtual machine {spec.vm_name} reports no OS disk")
    if os_disk.diff_disk_settings is not None and os_disk.diff_disk_settings.option:
        raise BackupError(
            f"{SCHEME}: {spec.vm_name} has an ephemeral OS disk, which cannot be snapshotted"
        )
    if os_disk.managed_disk is None or not os_disk.managed_disk.id:
        raise BackupError(
            f"{SCHEME}: the OS disk of {spec.vm_name} is not a managed disk; "
            "snapshot its VHD blob with: az storage blob snapshot"
        )
    disks = [
        _Disk(
            "os",
            os_disk.managed_disk.id,
            os_disk.name or os_disk.managed_disk.id.rsplit("/", 1)[-1],
            None,
            _text(os_disk.managed_disk.storage_account_type),
        )
    ]
    if spec.data_disks and storage is not None:
        for data in storage.data_disks or []:
            if data.managed_disk is None or not data.managed_disk.id:
                raise BackupError(
                    f"{SCHEME}: data disk at LUN {data.lun} of {spec.vm_name} is not a managed disk"
                )
            disks.append(
                _Disk(
                    f"lun{data.lun}",
                    data.managed_disk.id,
                    data.name or data.managed_disk.id.rsplit("/", 1)[-1],
                    data.lun,
                    _text(data.managed_disk.storage_account_type),
                )
            )
    return disks


def _text(value: object) -> str | None:
    """An SDK enum member or string as ARM spells it."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _arm_code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    return str(getattr(error, "code", None) or "")


def _arm_message(exc: AzureError) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or exc.message or str(exc)
    return _first_line(str(message))


class AzureSnapshotProvider:
    """Snapshots the VM's disks with the real azure-mgmt-compute client.

    ``credential``, ``endpoint`` and ``connection_verify`` exist for the tests, which
    point the unchanged client at a local fake of ARM; by default the client talks to
    the public cloud's ARM with ``DefaultAzureCredential``.
    """

    scheme = SCHEME

    def __init__(
        self,
        spec: AzureSnapshotSpec,
        *,
        credential: TokenCredential | None = None,
        endpoint: str | None = None,
        connection_verify: bool | str = True,
        polling_interval: float = 5.0,
        timeout: float = 3600.0,
    ) -> None:
        self.spec = spec
        self._credential = credential
        self._endpoint = endpoint
        self._connection_verify = connection_verify
        self._polling_interval = polling_interval  # used when ARM sends no Retry-After
        self.timeout = timeout

    def describe(self) -> str:
        spec = self.spec
        what = "OS and data disks" if spec.data_disks else "OS disk"
        kind = "incremental" if spec.incremental else "full"
        return (
            f"{SCHEME}: {kind} snapshots of the {what} of VM {spec.vm_name} "
            f"(resource group {spec.resource_group}, subscription {spec.subscription}), "
            f"created in resource group {spec.target_group}"
        )

    def take(self, executor: Executor, context: BackupContext) -> BackupRecord:
        """Snapshot the disks; ``executor`` is unused: ARM takes the snapshot from outside."""
        created_at = utc_timestamp()
        started = time.monotonic()
        default = DefaultAzureCredential() if self._credential is None else None
        credential = self._credential or default
        assert credential is not None
        try:
            with self._client(credential) as client:
                vm = self._get_vm(client)
                disks = _disks(vm, self.spec)
                snapshots = self._snapshot_all(client, vm, disks, context)
        finally:
            if default is not None:
                default.close()
        return self._record(vm, disks, snapshots, created_at, time.monotonic() - started)

    # -- ARM calls ----------------------------------------------------------------------

    def _client(self, credential: TokenCredential) -> ComputeManagementClient:
        kwargs: dict[str, Any] = {
            "connection_verify": self._connection_verify,
            "polling_interval": self._polling_interval,
        }
        if self._endpoint:
            kwargs["base_url"] = self._endpoint
        return ComputeManagementClient(credential, self.spec.subscription, **kwargs)

    def _get_vm(self, client: ComputeManagementClient) -> VirtualMachine:
        spec = self.spec
        try:
            return client.virtual_machines.get(spec.resource_group, spec.vm_name)
        except AzureError as exc:
            raise self._error(exc, f"read virtual machine {spec.vm_name}") from exc

    def _snapshot_all(
        self,
        client: ComputeManagementClient,
        vm: VirtualMachine,
        disks: list[_Disk],
        context: BackupContext,
    ) -> list[Snapshot]:
        # Start every snapshot first so that they are as close in time as ARM allows,
        # then follow each operation; a failure leaves the others to finish, and says so.
        pollers: list[tuple[_Disk, LROPoller[Snapshot]]] = []
        failure: BackupError | None = None
        for disk in disks:
            body = self._snapshot_body(vm, disk, context)
            name = snapshot_name(disk.name, context.run_id)
            try:
                pollers.append(
                    (
                        disk,
                        client.snapshots.begin_create_or_update(self.spec.target_group, name, body),
                    )
                )
            except AzureError as exc:
                failure = self._error(exc, f"create snapshot {name} of disk {disk.name}")
                break
        deadline = time.monotonic() + self.timeout
        done: list[Snapshot] = []
        for disk, poller in pollers:
            try:
                snapshot = poller.result(timeout=max(0.0, deadline - time.monotonic()))
            except AzureError as exc:
                failure = failure or self._error(exc, f"snapshot disk {disk.name}")
                continue
            if not poller.done() or snapshot is None:
                failure = failure or BackupError(
                    f"{SCHEME}: snapshot of disk {disk.name} did not finish within "
                    f"{self.timeout:g} s (status {poller.status()})"
                )
                continue
            done.append(snapshot)
        if failure is not None:
            if done:
                left = ", ".join(s.id or "?" for s in done)
                raise BackupError(f"{failure} (snapshots created and left in place: {left})")
            raise failure
        return done

    def _snapshot_body(self, vm: VirtualMachine, disk: _Disk, context: BackupContext) -> Any:
        # The REST shape itself (a JSON-ready mapping), which the client sends as is.
        return {
            "location": vm.location,
            "tags": {
                TAG_RUN_ID: context.run_id,
                "imageprep-vm": self.spec.vm_name,
                "imageprep-disk": disk.name,
                "imageprep-disk-role": disk.role,
            },
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": disk.id},
                "incremental": self.spec.incremental,
            },
        }

    # -- errors -------------------------------------------------------------------------

    def _error(self, exc: AzureError, doing: str) -> BackupError:
        """One line saying what failed and why, in the user's terms."""
        spec = self.spec
        if isinstance(exc, ClientAuthenticationError):
            return BackupError(
                f"{SCHEME}: Azure authentication failed ({_arm_message(exc)}); "
                "sign in with az login, a managed identity or AZURE_CLIENT_ID/"
                "AZURE_TENANT_ID/AZURE_CLIENT_SECRET"
            )
        if isinstance(exc, HttpResponseError):
            code = _arm_code(exc)
            status = exc.status_code
            # A failed long-running operation reports HTTP 200 for its status document.
            tag = " ".join(x for x in (str(status) if (status or 0) >= 400 else "", code) if x)
            if status == 403:
                return BackupError(
                    f"{SCHEME}: the Azure credential may not {doing} in resource group "
                    f"{spec.target_group if 'snapshot' in doing else spec.resource_group} "
                    f"({tag}): {_arm_message(exc)}"
                )
            if status == 404 and "virtual machine" in doing:
                if code.lower() == "resourcegroupnotfound":
                    where = f"resource group {spec.resource_group} does not exist"
                else:
                    where = f"virtual machine {spec.vm_name} does not exist"
                return BackupError(
                    f"{SCHEME}: {where} in subscription {spec.subscription} ({tag}): {spec.vm_id}"
                )
            return BackupError(f"{SCHEME}: could not {doing} ({tag}): {_arm_message(exc)}")
        if isinstance(exc, ServiceRequestError):
            endpoint = self._endpoint or "Azure Resource Manager"
            return BackupError(f"{SCHEME}: cannot reach {endpoint}: {_arm_message(exc)}")
        return BackupError(f"{SCHEME}: could not {doing}: {_arm_message(exc)}")

    # -- the record ---------------------------------------------------------------------

    def _record(
        self,
        vm: VirtualMachine,
        disks: list[_Disk],
        snapshots: list[Snapshot],
        created_at: str,
        duration: float,
    ) -> BackupRecord:
        ids = [s.id or "" for s in snapshots]
        details: dict[str, str] = {
            "vm_id": vm.id or self.spec.vm_id,
            "location": vm.location,
            "incremental": str(self.spec.incremental).lower(),
            "snapshot_ids": "\n".join(ids),
        }
        for disk, snapshot in zip(disks, snapshots, strict=True):
            details[f"{disk.role}_disk"] = disk.id
            details[f"{disk.role}_snapshot"] = snapshot.id or ""
        return BackupRecord(
            provider=SCHEME,
            reference=ids[0],
            created_at=created_at,
            duration=duration,
            details=details,
            restore_hint=restore_hint(self.spec, vm, disks, snapshots),
        )


def restore_hint(
    spec: AzureSnapshotSpec,
    vm: VirtualMachine,
    disks: list[_Disk],
    snapshots: list[Snapshot],
) -> str:
    """The az commands that put the VM back on new disks made from the snapshots.

    New disks are created from the snapshots in the VM's resource group (same region,
    SKU and zone as the originals), the VM is deallocated, its OS disk swapped and its
    data disks exchanged LUN by LUN, then it is started again. The old disks stay.
    """
    q = shlex.quote
    group = f"--subscription {q(spec.subscription)} -g {q(spec.resource_group)}"
    zone = f" --zone {q(vm.zones[0])}" if vm.zones else ""
    steps: list[str] = []
    swaps: list[str] = []
    for disk, snapshot in zip(disks, snapshots, strict=True):
        new = snapshot.name or f"{disk.name}-restored"  # disks and snapshots: separate names
        sku = f" --sku {q(disk.sku)}" if disk.sku else ""
        steps.append(
            f"az disk create {group} -n {q(new)} --source {q(snapshot.id or '')}"
            f" -l {q(vm.location)}{sku}{zone}"
        )
        if disk.lun is None:
            swaps.append(f"az vm update {group} -n {q(spec.vm_name)} --os-disk {q(new)}")
        else:
            swaps.append(f"az vm disk detach {group} --vm-name {q(spec.vm_name)} -n {q(disk.name)}")
            swaps.append(
                f"az vm disk attach {group} --vm-name {q(spec.vm_name)} -n {q(new)}"
                f" --lun {disk.lun}"
            )
    steps.append(f"az vm deallocate {group} -n {q(spec.vm_name)}")
    steps.extend(swaps)
    steps.append(f"az vm start {group} -n {q(spec.vm_name)}")
    return " && ".join(steps)


def from_arg(arg: str) -> AzureSnapshotProvider:
    return AzureSnapshotProvider(parse_arg(arg))
