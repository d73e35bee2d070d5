"""``azure:VM_ID[?power-off-timeout=SECONDS]`` — an Azure VM, asked through ARM.

VM_ID is the VM's resource id (``az vm show --query id -o tsv``). The power state is the
instance view's ``PowerState/…`` status (``stopped``, ``deallocated``, ``running``, …).
Capturing follows Azure's documented order for a generalized VM: deallocate, mark it
generalized, then create a gallery image version (source: the VM) or a managed image,
each long-running operation followed to its end. Before anything changes, the image
definition's OS type, OS state, Hyper-V generation, architecture and security type are
compared with the VM, and an existing version or image is refused (or, when this run
made it, adopted: a resumed run never makes a second one).

azure-identity and azure-mgmt-compute come from the ``azure`` extra and are imported
only when this scheme is used; the client is the same as ``--backup azure-snapshot:``'s.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.polling import LROPoller
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient

from agent.errors import CaptureMismatch, PlatformError, UsageError
from agent.platforms.base import CaptureRecord, PowerState
from agent.provenance import TAG_RUN_ID

if TYPE_CHECKING:
    from agent.capture import CaptureTarget

SCHEME = "azure"
_VM_ID = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Compute/virtualMachines/(?P<vm>[^/]+)/?",
    re.IGNORECASE,
)
_OFF = {"PowerState/stopped", "PowerState/deallocated"}
_RUNNING = {"PowerState/running", "PowerState/starting"}
# Which image definition SecurityType values accept a VM of each security type
# (Compute Gallery "Trusted launch" / "Confidential VM" image definition features).
_SECURITY_FITS = {
    "Standard": {
        "",
        "Standard",
        "TrustedLaunchSupported",
        "TrustedLaunchAndConfidentialVmSupported",
    },
    "TrustedLaunch": {
        "TrustedLaunch",
        "TrustedLaunchSupported",
        "TrustedLaunchAndConfidentialVmSupported",
    },
    "ConfidentialVM": {
        "ConfidentialVM",
        "ConfidentialVmSupported",
        "TrustedLaunchAndConfidentialVmSupported",
    },
}


@dataclass(frozen=True)
class AzureVmSpec:
    subscription: str
    resource_group: str
    vm_name: str
    power_off_timeout: float = 600.0

    @property
    def vm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachines/{self.vm_name}"
        )


def parse_arg(arg: str) -> AzureVmSpec:
    path, _, query = arg.strip().partition("?")
    match = _VM_ID.fullmatch(path)
    if match is None:
        raise UsageError(
            f"--platform {SCHEME}:{arg}: expected the VM's resource id, /subscriptions/SUB/"
            "resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM "
            "(az vm show -g RG -n VM --query id -o tsv prints it)"
        )
    try:
        uuid.UUID(match["sub"])
    except ValueError:
        raise UsageError(
            f"--platform {SCHEME}: subscription {match['sub']!r} is not a subscription id (a GUID)"
        ) from None
    timeout = 600.0
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key != "power-off-timeout":
            raise UsageError(
                f"--platform {SCHEME}: unknown option {key}={value!r} "
                "(known: power-off-timeout=SECONDS)"
            )
        from agent.platforms.libvirt import _seconds

        timeout = _seconds(value)
    return AzureVmSpec(match["sub"], match["rg"], match["vm"], timeout)


@dataclass(frozen=True)
class VmShape:
    """What an image of the VM will be: compared with the image definition."""

    location: str
    os_type: str
    hyper_v_generation: str
    architecture: str
    security_type: str  # "Standard", "TrustedLaunch" or "ConfidentialVM"


def _text(value: object, default: str = "") -> str:
    if value is None:
        return default
    return str(getattr(value, "value", value))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class AzurePlatform:
    """The VM through the real azure-mgmt-compute client.

    ``credential``, ``endpoint`` and ``connection_verify`` exist for the tests, which
    point the unchanged client at a local fake of ARM.
    """

    scheme = SCHEME

    def __init__(
        self,
        spec: AzureVmSpec,
        *,
        credential: TokenCredential | None = None,
        endpoint: str | None = None,
        connection_verify: bool | str = True,
        polling_interval: float = 5.0,
        operation_timeout: float = 3600.0,
    ) -> None:
        self.spec = spec
        self.power_off_timeout = spec.power_off_timeout
        self.power_poll_interval = polling_interval
        self._credential = credential
        self._endpoint = endpoint
        self._connection_verify = connection_verify
        self._polling_interval = polling_interval
        self.operation_timeout = operation_timeout
        self._client_cache: ComputeManagementClient | None = None

    @property
    def vm_id(self) -> str:
        return self.spec.vm_id

    def describe(self) -> str:
        return f"{SCHEME}: VM {self.spec.vm_name} (resource group {self.spec.resource_group})"

    # -- power --------------------------------------------------------------------------

    def power_state(self) -> PowerState:
        view = self._call(
            "read the instance view of",
            "Microsoft.Compute/virtualMachines/read",  # the instance view needs no more
            lambda c: c.virtual_machines.instance_view(self.spec.resource_group, self.spec.vm_name),
        )
        codes = [_text(s.code) for s in (view.statuses or [])]
        words = next((c for c in codes if c.startswith("PowerState/")), "PowerState/unknown")
        return PowerState(words=words, off=words in _OFF, running=words in _RUNNING)

    # -- capture ------------------------------------------------------------------------

    def check_capture(self, target: CaptureTarget, *, run_id: str | None) -> None:
        self._check(target, run_id)

    def _check(self, target: CaptureTarget, run_id: str | None) -> tuple[VmShape, str, Any, bool]:
        """(the VM's shape, the image's location, this run's finished image, delete first).

        An image this run made is adopted (a resume never makes a second one), or, when
        it failed, deleted and made again; anyone else's is refused unless
        ``--replace-version``.
        """
        shape = self._shape()
        if target.kind == "gallery":
            location = self._check_definition(target, shape)
            names = [r.name.lower() for r in target.regions]
            if names and location.replace(" ", "").lower() not in names:
                raise CaptureMismatch(
                    f"--capture {target.spec}: regions: must include the gallery's region "
                    f"{location}; nothing was changed"
                )
        else:
            location = shape.location
            if shape.security_type != "Standard":
                raise CaptureMismatch(
                    f"--capture {target.spec}: securityType: VM {self.spec.vm_name} is "
                    f"{shape.security_type}, and managed images do not support it; capture "
                    "it into an Azure Compute Gallery (--capture gallery:…)"
                )
        existing = self._existing(target)
        if existing is None:
            return shape, location, None, False
        tags = existing.tags or {}
        state = _text(existing.properties.provisioning_state if existing.properties else None)
        if run_id is not None and tags.get(TAG_RUN_ID) == run_id:
            if state == "Failed":
                return shape, location, None, True
            return shape, location, existing, False
        if target.kind == "gallery" and target.replace_version:
            return shape, location, None, True
        what = "image version" if target.kind == "gallery" else "managed image"
        hint = " (or give --replace-version)" if target.kind == "gallery" else ""
        raise CaptureMismatch(
            f"--capture {target.spec}: the {what} already exists ({state or 'unknown state'}, "
            f"made by run {tags.get(TAG_RUN_ID, 'unknown')}); choose another name{hint}"
        )

    def _shape(self) -> VmShape:
        spec = self.spec
        vm = self._call(
            "read",
            "Microsoft.Compute/virtualMachines/read",
            lambda c: c.virtual_machines.get(spec.resource_group, spec.vm_name),
        )
        props = vm.properties
        os_disk = props.storage_profile.os_disk if props and props.storage_profile else None
        if os_disk is None or os_disk.managed_disk is None or not os_disk.managed_disk.id:
            raise PlatformError(f"{SCHEME}: VM {spec.vm_name} has no managed OS disk to capture")
        disk_id = os_disk.managed_disk.id
        disk_group = disk_id.split("/")[4]
        disk = self._call(
            "read the OS disk of",
            "Microsoft.Compute/disks/read",
            lambda c: c.disks.get(disk_group, disk_id.rsplit("/", 1)[-1]),
        )
        dprops = disk.properties
        security = props.security_profile.security_type if props.security_profile else None
        caps = dprops.supported_capabilities if dprops else None
        return VmShape(
            location=str(vm.location),
            os_type=_text(os_disk.os_type, _text(dprops.os_type if dprops else None)),
            hyper_v_generation=_text(dprops.hyper_v_generation if dprops else None, "V1"),
            architecture=_text(caps.architecture if caps else None, "x64"),
            security_type=_text(security, "Standard"),
        )

    def _check_definition(self, target: CaptureTarget, shape: VmShape) -> str:
        definition = self._call(
            f"read image definition {target.definition} of gallery {target.gallery} for",
            "Microsoft.Compute/galleries/images/read",
            lambda c: c.gallery_images.get(
                target.resource_group, str(target.gallery), str(target.definition)
            ),
        )
        props = definition.properties
        features = {_text(f.name): _text(f.value) for f in (props.features or [])} if props else {}
        wanted = {
            "osType": (_text(props.os_type) if props else "", shape.os_type),
            "osState": (_text(props.os_state) if props else "", "Generalized"),
            "hyperVGeneration": (
                _text(props.hyper_v_generation if props else None, "V1"),
                shape.hyper_v_generation,
            ),
            "architecture": (
                _text(props.architecture if props else None, "x64"),
                shape.architecture,
            ),
        }
        for field, (theirs, ours) in wanted.items():
            if theirs.lower() != ours.lower():
                raise CaptureMismatch(
                    f"--capture {target.spec}: {field}: image definition {target.definition} "
                    f"says {theirs}, but VM {self.spec.vm_name} gives {ours}; nothing was changed"
                )
        security = features.get("SecurityType", "")
        fits = _SECURITY_FITS.get(shape.security_type, {shape.security_type})
        if security not in fits:
            raise CaptureMismatch(
                f"--capture {target.spec}: securityType: image definition {target.definition} "
                f"says {security or 'Standard'}, but VM {self.spec.vm_name} is "
                f"{shape.security_type}; nothing was changed"
            )
        return str(definition.location)

    def _existing(self, target: CaptureTarget) -> Any:
        try:
            if target.kind == "gallery":
                return self._client().gallery_image_versions.get(
                    target.resource_group,
                    str(target.gallery),
                    str(target.definition),
                    str(target.version),
                )
            return self._client().images.get(target.resource_group, str(target.image))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._error(exc, f"read {target.resource_id}", "read") from exc

    def capture(
        self,
        target: CaptureTarget,
        *,
        run_id: str | None,
        tags: Mapping[str, str],
        on_step: Callable[[str, Mapping[str, str]], None],
    ) -> CaptureRecord:
        shape, location, existing, delete_first = self._check(target, run_id)
        kind = "gallery-image-version" if target.kind == "gallery" else "managed-image"
        if existing is not None:
            made = self._follow_existing(target, existing)
            on_step("adopted", {"image_id": str(made.id)})
            return self._record(target, kind, made, adopted=True, steps=("adopted",))
        spec = self.spec
        state = self.power_state()
        if not state.off and state.words != "PowerState/deallocating":
            raise PlatformError(
                f"{SCHEME}: VM {spec.vm_name} is {state.words}, not stopped: capture only a "
                "VM that was generalized and shut down; nothing was changed"
            )
        steps: list[str] = []
        if state.words != "PowerState/deallocated":
            self._follow(
                "deallocate",
                "Microsoft.Compute/virtualMachines/deallocate/action",
                lambda c: c.virtual_machines.begin_deallocate(spec.resource_group, spec.vm_name),
            )
        steps.append("deallocated")
        on_step("deallocated", {"vm_id": spec.vm_id})
        self._call(
            "mark generalized",
            "Microsoft.Compute/virtualMachines/generalize/action",
            lambda c: c.virtual_machines.generalize(spec.resource_group, spec.vm_name),
        )
        steps.append("generalized")
        on_step("generalized", {"vm_id": spec.vm_id})
        if delete_first:
            self._delete(target)
            steps.append("deleted")
            on_step("deleted", {"image_id": target.resource_id})
        body = self._body(target, shape, location, tags)
        on_step("creating", {"image_id": target.resource_id})
        made = self._follow(f"create {target.resource_id} from", *self._create(target, body))
        steps.append("created")
        on_step("created", {"image_id": str(made.id)})
        return self._record(target, kind, made, adopted=False, steps=tuple(steps))

    def _delete(self, target: CaptureTarget) -> None:
        if target.kind == "gallery":
            self._follow(
                f"delete image version {target.version} before capturing",
                "Microsoft.Compute/galleries/images/versions/delete",
                lambda c: c.gallery_image_versions.begin_delete(
                    target.resource_group,
                    str(target.gallery),
                    str(target.definition),
                    str(target.version),
                ),
            )
        else:
            self._follow(
                f"delete managed image {target.image} before capturing",
                "Microsoft.Compute/images/delete",
                lambda c: c.images.begin_delete(target.resource_group, str(target.image)),
            )

    def _create(self, target: CaptureTarget, body: Any) -> tuple[str, Callable[[Any], Any]]:
        if target.kind == "gallery":
            return (
                "Microsoft.Compute/galleries/images/versions/write",
                lambda c: c.gallery_image_versions.begin_create_or_update(
                    target.resource_group,
                    str(target.gallery),
                    str(target.definition),
                    str(target.version),
                    body,
                ),
            )
        return (
            "Microsoft.Compute/images/write",
            lambda c: c.images.begin_create_or_update(
                target.resource_group, str(target.image), body
            ),
        )

    def _body(
        self, target: CaptureTarget, shape: VmShape, location: str, tags: Mapping[str, str]
    ) -> dict[str, Any]:
        # The REST shape itself (a JSON-ready mapping), which the client sends as is.
        if target.kind == "image":
            return {
                "location": location,
                "tags": dict(tags),
                "properties": {
                    "sourceVirtualMachine": {"id": self.spec.vm_id},
                    "hyperVGeneration": shape.hyper_v_generation,
                },
            }
        regions = list(target.regions) or []
        publishing: dict[str, Any] = {"excludeFromLatest": target.exclude_from_latest}
        if regions:
            publishing["targetRegions"] = [
                {"name": r.name}
                | ({"regionalReplicaCount": r.replicas} if r.replicas else {})
                | (
                    {"storageAccountType": target.storage_account_type}
                    if target.storage_account_type
                    else {}
                )
                | ({"excludeFromLatest": True} if target.exclude_from_latest else {})
                for r in regions
            ]
        if target.replicas:
            publishing["replicaCount"] = target.replicas
        if target.storage_account_type:
            publishing["storageAccountType"] = target.storage_account_type
        return {
            "location": location,
            "tags": dict(tags),
            "properties": {
                "publishingProfile": publishing,
                "storageProfile": {"source": {"virtualMachineId": self.spec.vm_id}},
            },
        }

    def _follow_existing(self, target: CaptureTarget, existing: Any) -> Any:
        """An image this run made earlier: wait until ARM says it is done."""
        deadline = time.monotonic() + self.operation_timeout
        current = existing
        while True:
            state = _text(current.properties.provisioning_state if current.properties else None)
            if state == "Succeeded":
                return current
            if state == "Failed" or time.monotonic() >= deadline:
                raise PlatformError(f"{SCHEME}: {target.resource_id} made by this run is {state}")
            time.sleep(self._polling_interval)
            current = self._existing(target)
            if current is None:
                raise PlatformError(f"{SCHEME}: {target.resource_id} vanished while followed")

    def _record(
        self, target: CaptureTarget, kind: str, made: Any, *, adopted: bool, steps: tuple[str, ...]
    ) -> CaptureRecord:
        details = {"location": str(made.location)}
        if target.kind == "gallery":
            details["gallery_image_id"] = target.resource_id.rsplit("/versions/", 1)[0]
        return CaptureRecord(
            kind=kind,
            image_id=str(made.id),
            vm_id=self.spec.vm_id,
            provisioning_state=_text(
                made.properties.provisioning_state if made.properties else None
            ),
            adopted=adopted,
            steps=steps,
            details=details,
        )

    # -- ARM calls ----------------------------------------------------------------------

    def _client(self) -> ComputeManagementClient:
        if self._client_cache is None:
            kwargs: dict[str, Any] = {
                "connection_verify": self._connection_verify,
                "polling_interval": self._polling_interval,
            }
            if self._endpoint:
                kwargs["base_url"] = self._endpoint
            credential = self._credential or DefaultAzureCredential()
            self._client_cache = ComputeManagementClient(
                credential, self.spec.subscription, **kwargs
            )
        return self._client_cache

    def _call(self, doing: str, action: str, call: Callable[[ComputeManagementClient], Any]) -> Any:
        try:
            return call(self._client())
        except AzureError as exc:
            raise self._error(exc, f"{doing} VM {self.spec.vm_name}", action) from exc

    def _follow(
        self, doing: str, action: str, start: Callable[[ComputeManagementClient], LROPoller[Any]]
    ) -> Any:
        """Start a long-running operation and follow it to its end."""
        what = f"{doing} VM {self.spec.vm_name}"
        try:
            poller = start(self._client())
            result = poller.result(timeout=self.operation_timeout)
        except AzureError as exc:
            raise self._error(exc, what, action) from exc
        if not poller.done():
            raise PlatformError(
                f"{SCHEME}: {what} did not finish within {self.operation_timeout:g} s "
                f"(status {poller.status()})"
            )
        return result

    def _error(self, exc: AzureError, doing: str, action: str) -> PlatformError:
        if isinstance(exc, ClientAuthenticationError):
            return PlatformError(
                f"{SCHEME}: Azure authentication failed ({_message(exc)}); sign in with az "
                "login, a managed identity or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"
            )
        if isinstance(exc, HttpResponseError):
            code = _text(getattr(getattr(exc, "error", None), "code", None))
            status = exc.status_code or 0
            tag = " ".join(x for x in (str(status) if status >= 400 else "", code) if x)
            if status == 403:
                return PlatformError(
                    f"{SCHEME}: ARM refused action {action} ({tag}) to {doing}: the Azure "
                    "credential needs a role that allows it"
                )
            return PlatformError(f"{SCHEME}: could not {doing} ({tag}): {_message(exc)}")
        if isinstance(exc, ServiceRequestError):
            endpoint = self._endpoint or "Azure Resource Manager"
            return PlatformError(f"{SCHEME}: cannot reach {endpoint}: {_message(exc)}")
        return PlatformError(f"{SCHEME}: could not {doing}: {_message(exc)}")


def _message(exc: AzureError) -> str:
    error = getattr(exc, "error", None)
    return _first_line(str(getattr(error, "message", None) or exc.message or exc))


def from_arg(arg: str) -> AzurePlatform:
    return AzurePlatform(parse_arg(arg))
