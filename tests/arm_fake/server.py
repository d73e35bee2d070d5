"""The fake of ARM: in-memory VMs, disks and snapshots behind an HTTPS listener on loopback.

Part of the *fake of Azure Resource Manager for tests* (see ``tests/arm_fake``). Paths,
resource names and ids are compared case-insensitively, as ARM does.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from azure.core.credentials import AccessToken

from tests.winrm_server.certs import TlsFiles

_SEG = r"[^/]+"
_VM_PATH = re.compile(
    rf"/subscriptions/(?P<sub>{_SEG})/resourceGroups/(?P<rg>{_SEG})"
    rf"/providers/Microsoft\.Compute/virtualMachines/(?P<name>{_SEG})",
    re.IGNORECASE,
)
_SNAPSHOT_PATH = re.compile(
    rf"/subscriptions/(?P<sub>{_SEG})/resourceGroups/(?P<rg>{_SEG})"
    rf"/providers/Microsoft\.Compute/snapshots/(?P<name>{_SEG})",
    re.IGNORECASE,
)
_OPERATION_PATH = re.compile(
    rf"/subscriptions/(?P<sub>{_SEG})/providers/Microsoft\.Compute/locations/(?P<loc>{_SEG})"
    rf"/DiskOperations/(?P<op>{_SEG})",
    re.IGNORECASE,
)
_SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_GROUP = (
    rf"/subscriptions/(?P<sub>{_SEG})/resourceGroups/(?P<rg>{_SEG})/providers/Microsoft\.Compute"
)
_VM_ACTION_PATH = re.compile(
    rf"{_GROUP}/virtualMachines/(?P<name>{_SEG})/(?P<action>instanceView|deallocate|generalize)",
    re.IGNORECASE,
)
_GALLERY_IMAGE_PATH = re.compile(
    rf"{_GROUP}/galleries/(?P<gallery>{_SEG})/images/(?P<name>{_SEG})", re.IGNORECASE
)
_GALLERY_VERSION_PATH = re.compile(
    rf"{_GROUP}/galleries/(?P<gallery>{_SEG})/images/(?P<image>{_SEG})/versions/(?P<name>{_SEG})",
    re.IGNORECASE,
)
_DISK_PATH = re.compile(rf"{_GROUP}/disks/(?P<name>{_SEG})", re.IGNORECASE)
_DISK_ACTION_PATH = re.compile(
    rf"{_GROUP}/disks/(?P<name>{_SEG})/(?P<action>beginGetAccess|endGetAccess)", re.IGNORECASE
)
_BLOB_PATH = re.compile(r"/blobs/(?P<disk>[0-9a-f-]+)/abcd")
MIB = 1 << 20
MIN_UPLOAD = 20 * MIB + 512  # Azure: uploadSizeBytes at least 20 MiB + the VHD footer
_IMAGE_PATH = re.compile(rf"{_GROUP}/images/(?P<name>{_SEG})", re.IGNORECASE)
_COMPUTE_OPERATION_PATH = re.compile(
    rf"/subscriptions/(?P<sub>{_SEG})/providers/Microsoft\.Compute/locations/(?P<loc>{_SEG})"
    rf"/(?:operations|capsOperations)/(?P<op>{_SEG})",
    re.IGNORECASE,
)
# ARM's gallery image version names: three dot-separated 32-bit integers (Major.Minor.Patch).
_VERSION_NAME = re.compile(r"\d{1,10}\.\d{1,10}\.\d{1,10}")
_OFF = ("PowerState/stopped", "PowerState/deallocated")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class ArmError(Exception):
    """An ARM error response: HTTP status and the ``{"error": {code, message}}`` body."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass
class Principal:
    """Who a token belongs to, and whether its role lets it write snapshots."""

    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    may_write_snapshots: bool = True


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    body: Any


@dataclass
class _Operation:
    snapshot_id: str
    started: str
    polls: int = 0


@dataclass
class _Job:
    """A compute long-running operation: what it does when it ends, and what it is."""

    kind: str  # "deallocate", "version", "image", "delete"
    started: str
    finish: Any  # () -> None, applied once when the operation reports Succeeded
    fail: Any  # () -> None, applied when it reports Failed
    resource: str | None = None  # the resource it makes (lower case), moved on by GETs too
    output: Any = None  # what its Location answers once it succeeded (grant access: the SAS)
    polls: int = 0
    ended: str | None = None


@dataclass
class Fault:
    """An injected answer: ``times`` requests matching METHOD and PATTERN get STATUS."""

    method: str
    pattern: str
    status: int
    times: int = 1
    retry_after: int | None = None


class FakeTokenCredential:
    """A fake azure-identity credential: a fixed bearer token, and the scopes asked for."""

    def __init__(self, token: str = "fake-arm-token") -> None:  # noqa: S107  a fake's token
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


class FakeArm:
    """ARM's state for one subscription, served over HTTPS by :meth:`serving`."""

    def __init__(
        self,
        subscription: str = "00000000-0000-4000-8000-00000000abcd",
        *,
        in_progress_polls: int = 2,
        retry_after: int | None = None,
        regrant_active_upload: bool = True,
    ) -> None:
        self.subscription = subscription
        # Write access asked again for a disk already in ActiveUpload (the controller died
        # without revoking, or the SAS expired). True: a new SAS, as Microsoft's 2019 "Upload
        # a vhd to Azure using Azure CLI" said ("If your SAS expires during upload, and you
        # haven't called revoke-access yet, you can get a new SAS to continue the upload
        # using grant-access, again", MicrosoftDocs/azure-docs commit 00d980b2); today's
        # page no longer says it, so False models ARM refusing with 409.
        self.regrant_active_upload = regrant_active_upload
        self.in_progress_polls = in_progress_polls  # status answers "InProgress" this often
        self.retry_after = retry_after
        self.fail_operations: tuple[str, str] | None = None  # (code, message) for "Failed"
        self.tokens: dict[str, Principal] = {"fake-arm-token": Principal()}
        self.resource_groups: set[str] = set()
        self.disks: dict[str, dict[str, Any]] = {}
        self.vms: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, _Operation] = {}
        self.jobs: dict[str, _Job] = {}
        # VM id (lower case) -> the power states the instance view reports next, one per
        # read; the last one stays. "PowerState/running" until a test says otherwise.
        self.power: dict[str, list[str]] = {}
        # VM id (lower case) -> a function giving its power state, e.g. from a test double
        # of the guest; it wins over ``power`` until ARM itself changes the state.
        self.power_sources: dict[str, Any] = {}
        self.generalized: set[str] = set()  # VM ids (lower case) marked generalized
        self.gallery_images: dict[str, dict[str, Any]] = {}
        self.gallery_versions: dict[str, dict[str, Any]] = {}
        self.images: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.keep_pages = True  # False: record offsets and lengths only (a bench's GiBs)
        self.page_delay = 0.0  # seconds each Put Page takes, so that concurrency shows
        self.pages_in_flight = 0
        self.max_pages_in_flight = 0
        self.sigs: dict[str, str] = {}  # disk id (lower) -> the signature of its write SAS
        self.pages: dict[str, dict[int, bytes]] = {}  # disk id (lower) -> offset -> data
        self.page_requests: list[tuple[str, int, int]] = []  # (disk id, offset, length)
        # Put Page requests after this many accepted ones hang until ``pages_released`` is
        # set (then fail 503): a client caught mid-upload, for a test to kill it there.
        self.hold_pages_after: int | None = None
        self.pages_released = threading.Event()
        self.slow_jobs: dict[str, int] = {}  # job kind -> InProgress answers (not the default)
        self.fail_jobs: dict[str, tuple[str, str]] = {}  # job kind -> (code, message)
        self.denied_actions: set[str] = (
            set()
        )  # e.g. "Microsoft.Compute/virtualMachines/deallocate/action"
        self.requests: list[Recorded] = []
        self.endpoint = ""
        self._lock = threading.Lock()

    # -- state set-up -------------------------------------------------------------------

    def _group_id(self, group: str) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{group}"

    def add_disk(
        self, group: str, name: str, *, location: str, size_gb: int, os_type: str | None = None
    ) -> dict[str, Any]:
        self.resource_groups.add(group.lower())
        disk_id = f"{self._group_id(group)}/providers/Microsoft.Compute/disks/{name}"
        properties: dict[str, Any] = {
            "creationData": {"createOption": "Empty"},
            "diskSizeGB": size_gb,
            "diskSizeBytes": size_gb << 30,
            "uniqueId": str(uuid.uuid4()),
            "provisioningState": "Succeeded",
            "diskState": "Attached",
            "timeCreated": _now(),
        }
        if os_type:
            properties |= {"osType": os_type, "hyperVGeneration": "V2"}
        disk = {
            "name": name,
            "id": disk_id,
            "type": "Microsoft.Compute/disks",
            "location": location,
            "sku": {"name": "Premium_LRS", "tier": "Premium"},
            "properties": properties,
        }
        self.disks[disk_id.lower()] = disk
        return disk

    def add_vm(
        self,
        group: str,
        name: str,
        *,
        location: str = "westeurope",
        data_disk_luns: tuple[int, ...] = (0, 1),
        zones: list[str] | None = None,
        security_type: str | None = None,
        hyper_v_generation: str = "V2",
        architecture: str = "x64",
        os_type: str = "Linux",
    ) -> str:
        """A Linux VM with a managed OS disk and data disks at the given LUNs; its id."""
        os_disk = self.add_disk(
            group,
            f"{name}_OsDisk_1_{uuid.uuid4().hex}",
            location=location,
            size_gb=30,
            os_type=os_type,
        )
        os_disk["properties"]["hyperVGeneration"] = hyper_v_generation
        os_disk["properties"]["supportedCapabilities"] = {"architecture": architecture}
        data_disks = self._add_data_disks(group, name, location, data_disk_luns)
        vm_id = f"{self._group_id(group)}/providers/Microsoft.Compute/virtualMachines/{name}"
        vm: dict[str, Any] = {
            "name": name,
            "id": vm_id,
            "type": "Microsoft.Compute/virtualMachines",
            "location": location,
            "tags": {},
            "properties": _vm_properties(name, self._group_id(group), os_type, os_disk, data_disks),
        }
        if zones:
            vm["zones"] = zones
        if security_type:
            vm["properties"]["securityProfile"] = {
                "securityType": security_type,
                "uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": True},
            }
        self.vms[vm_id.lower()] = vm
        self.power[vm_id.lower()] = ["PowerState/running"]
        return vm_id

    def _add_data_disks(
        self, group: str, name: str, location: str, luns: tuple[int, ...]
    ) -> list[dict[str, Any]]:
        """A 64 GB disk per LUN, as the VM's storageProfile.dataDisks entries."""
        data_disks = []
        for lun in luns:
            disk = self.add_disk(group, f"{name}-data{lun}", location=location, size_gb=64)
            data_disks.append(
                {
                    "lun": lun,
                    "name": disk["name"],
                    "createOption": "Attach",
                    "caching": "None",
                    "managedDisk": {"storageAccountType": "Premium_LRS", "id": disk["id"]},
                    "deleteOption": "Detach",
                    "diskSizeGB": 64,
                    "toBeDetached": False,
                }
            )
        return data_disks

    def add_gallery_image(
        self,
        group: str,
        gallery: str,
        name: str,
        *,
        location: str = "westeurope",
        os_type: str = "Linux",
        os_state: str = "Generalized",
        hyper_v_generation: str | None = "V2",
        architecture: str | None = "x64",
        security_type: str | None = None,
    ) -> str:
        """An image definition in a gallery; its id. None leaves a property out (ARM's default)."""
        self.resource_groups.add(group.lower())
        image_id = (
            f"{self._group_id(group)}/providers/Microsoft.Compute/galleries/{gallery}/images/{name}"
        )
        properties: dict[str, Any] = {
            "osType": os_type,
            "osState": os_state,
            "identifier": {"publisher": "contoso", "offer": gallery, "sku": name},
            "provisioningState": "Succeeded",
        }
        if hyper_v_generation:
            properties["hyperVGeneration"] = hyper_v_generation
        if architecture:
            properties["architecture"] = architecture
        if security_type:
            properties["features"] = [{"name": "SecurityType", "value": security_type}]
        self.gallery_images[image_id.lower()] = {
            "name": name,
            "id": image_id,
            "type": "Microsoft.Compute/galleries/images",
            "location": location,
            "properties": properties,
        }
        return image_id

    # -- serving ------------------------------------------------------------------------

    @contextmanager
    def serving(self, tls: TlsFiles) -> Iterator[FakeArm]:
        """Listen on 127.0.0.1 (a free port) with the given certificate; sets ``endpoint``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.endpoint = f"https://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-arm", daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            self.pages_released.set()  # no held Put Page outlives the server
            server.shutdown()
            server.server_close()
            thread.join()

    def requests_to(self, method: str, pattern: str) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == method and re.search(pattern, r.path, re.IGNORECASE)
        ]

    # -- ARM ----------------------------------------------------------------------------

    def handle(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """One request -> (status, headers, JSON body or None)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        blob = _BLOB_PATH.fullmatch(parts.path)
        if blob is not None:  # the storage side: SAS in the query, binary bodies
            with self._lock:
                self.pages_in_flight += 1
                self.max_pages_in_flight = max(self.max_pages_in_flight, self.pages_in_flight)
            try:
                time.sleep(self.page_delay)  # a storage round trip, outside the lock
                with self._lock:
                    held = self.hold_pages_after is not None and (
                        len(self.page_requests) >= self.hold_pages_after
                    )
                    if not held:
                        return self._put_page(method, blob["disk"], query, headers, body)
                self.pages_released.wait(120)
                return 503, {}, _storage_error("ServerBusy", "The server is busy.")
            finally:
                with self._lock:
                    self.pages_in_flight -= 1
        authorization = headers.get("authorization")
        parsed = json.loads(body) if body else None
        with self._lock:
            self.requests.append(Recorded(method, parts.path, query, authorization, parsed))
            try:
                principal = self._authenticate(authorization)
                if "api-version" not in query:
                    raise ArmError(
                        400,
                        "MissingApiVersionParameter",
                        "The api-version query parameter (?api-version=) is required "
                        "for all requests.",
                    )
                return self._route(method, parts.path, query, parsed, principal)
            except ArmError as exc:
                extra = dict(exc.headers)
                if exc.status == 401:
                    extra["WWW-Authenticate"] = (
                        'Bearer authorization_uri="https://login.microsoftonline.com/common",'
                        ' error="invalid_token", error_description="The access token is invalid."'
                    )
                return exc.status, extra, {"error": {"code": exc.code, "message": exc.message}}

    def _authenticate(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        principal = self.tokens.get(token)
        if principal is None:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        return principal

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        principal: Principal,
    ) -> tuple[int, dict[str, str], Any]:
        for fault in self.faults:
            if (
                fault.times > 0
                and fault.method == method
                and re.search(fault.pattern, path, re.IGNORECASE)
            ):
                fault.times -= 1
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                code = "TooManyRequests" if fault.status == 429 else "InternalServerError"
                raise ArmError(fault.status, code, f"Injected {fault.status}.", extra)
        for pattern, handler in (
            (_VM_ACTION_PATH, {"GET": self._vm_action, "POST": self._vm_action}),
            (
                _GALLERY_VERSION_PATH,
                {
                    "GET": self._get_version,
                    "PUT": self._put_version,
                    "DELETE": self._delete_version,
                },
            ),
            (_GALLERY_IMAGE_PATH, {"GET": self._get_gallery_image}),
            (
                _IMAGE_PATH,
                {"GET": self._get_image, "PUT": self._put_image, "DELETE": self._delete_image},
            ),
            (_COMPUTE_OPERATION_PATH, {"GET": self._get_job}),
            (
                _DISK_PATH,
                {
                    "GET": self._get_disk,
                    "PUT": self._put_disk,
                    "PATCH": self._patch_disk,
                    "DELETE": self._delete_disk,
                },
            ),
            (_DISK_ACTION_PATH, {"POST": self._disk_access}),
            (_VM_PATH, {"GET": self._get_vm}),
            (_SNAPSHOT_PATH, {"GET": self._get_snapshot, "PUT": self._put_snapshot}),
            (_OPERATION_PATH, {"GET": self._get_operation}),
        ):
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if match["sub"].lower() != self.subscription.lower():
                raise ArmError(
                    404,
                    "SubscriptionNotFound",
                    f"The subscription '{match['sub']}' could not be found.",
                )
            if method not in handler:
                raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")
            return handler[method](match, query, body, principal)
        raise ArmError(404, "InvalidResourceType", f"No route for {method} {path} in this fake.")

    def _check_group(self, group: str) -> None:
        if group.lower() not in self.resource_groups:
            raise ArmError(
                404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found."
            )

    def _get_vm(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        self._check_group(match["rg"])
        vm = self.vms.get(match.group(0).lower())
        if vm is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/virtualMachines/{match['name']}' under resource "
                f"group '{match['rg']}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )
        return 200, {}, vm

    def _get_snapshot(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        self._check_group(match["rg"])
        snapshot = self.snapshots.get(match.group(0).lower())
        if snapshot is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/snapshots/{match['name']}' under resource "
                f"group '{match['rg']}' was not found.",
            )
        return 200, {}, snapshot

    def _put_snapshot(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        snapshot_id = match.group(0)
        if not principal.may_write_snapshots:
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{principal.object_id}' with object id '{principal.object_id}' "
                "does not have authorization to perform action "
                f"'Microsoft.Compute/snapshots/write' over scope '{snapshot_id}' or the scope "
                "is invalid. If access was recently granted, please refresh your credentials.",
            )
        self._check_group(match["rg"])
        if not _SNAPSHOT_NAME.fullmatch(match["name"]):
            raise ArmError(
                400, "InvalidParameter", f"The snapshot name '{match['name']}' is invalid."
            )
        source, location = self._check_snapshot_body(body)
        incremental = bool(body["properties"].get("incremental", False))
        self.snapshots[snapshot_id.lower()] = {
            "name": match["name"],
            "id": snapshot_id,
            "type": "Microsoft.Compute/snapshots",
            "location": location,
            "tags": dict(body.get("tags") or {}),
            "sku": {"name": "Standard_LRS", "tier": "Standard"},
            "properties": _snapshot_properties(source, incremental),
        }
        return 202, self._disk_operation(snapshot_id, location, query), None

    def _disk_operation(
        self, resource_id: str, location: str, query: dict[str, str]
    ) -> dict[str, str]:
        """Start a DiskOperations status for ``resource_id``: the 202's headers."""
        operation_id = str(uuid.uuid4())
        self.operations[operation_id] = _Operation(resource_id.lower(), _now())
        status_url = (
            f"{self.endpoint}/subscriptions/{self.subscription}/providers/Microsoft.Compute/"
            f"locations/{location}/DiskOperations/{operation_id}"
            f"?p={uuid.uuid4()}&api-version={query['api-version']}"
        )
        headers = {"Azure-AsyncOperation": status_url, "Location": f"{status_url}&monitor=true"}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def _check_snapshot_body(self, body: Any) -> tuple[dict[str, Any], str]:
        if not isinstance(body, dict) or not body.get("location"):
            raise ArmError(
                400, "LocationRequired", "The location property is required for this definition."
            )
        creation = (body.get("properties") or {}).get("creationData") or {}
        if creation.get("createOption") != "Copy" or not creation.get("sourceResourceId"):
            raise ArmError(
                400,
                "InvalidParameter",
                "Required parameter 'creationData' is missing or is not a Copy of a "
                "sourceResourceId.",
            )
        source = self.disks.get(str(creation["sourceResourceId"]).lower())
        if source is None:
            raise ArmError(404, "NotFound", f"Resource {creation['sourceResourceId']} not found.")
        if str(body["location"]).lower() != source["location"].lower():
            raise ArmError(
                400,
                "InvalidParameter",
                f"The snapshot location '{body['location']}' differs from the disk's "
                f"location '{source['location']}'.",
            )
        return source, str(body["location"])

    def _get_operation(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        operation = self.operations.get(match["op"])
        if operation is None:
            raise ArmError(404, "OperationNotFound", f"Operation {match['op']} not found.")
        operation.polls += 1
        status: dict[str, Any] = {"startTime": operation.started, "name": match["op"]}
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        if operation.polls <= self.in_progress_polls:
            return 200, headers, status | {"status": "InProgress"}
        snapshot = self.snapshots[operation.snapshot_id]
        if self.fail_operations is not None:
            code, message = self.fail_operations
            snapshot["properties"]["provisioningState"] = "Failed"
            return (
                200,
                {},
                status
                | {
                    "endTime": _now(),
                    "status": "Failed",
                    "error": {"code": code, "message": message},
                },
            )
        snapshot["properties"]["provisioningState"] = "Succeeded"
        return (
            200,
            {},
            status
            | {
                "endTime": _now(),
                "status": "Succeeded",
                "properties": {"output": snapshot},
            },
        )

    # -- VM actions, galleries, images: capture --------------------------------------------

    def _deny(self, action: str, scope: str, principal: Principal) -> None:
        if action in self.denied_actions:
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{principal.object_id}' with object id '{principal.object_id}' "
                f"does not have authorization to perform action '{action}' over scope "
                f"'{scope}' or the scope is invalid. If access was recently granted, please "
                "refresh your credentials.",
            )

    def _vm(self, sub: str, group: str, name: str) -> dict[str, Any]:
        self._check_group(group)
        vm_id = (
            f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Compute/"
            f"virtualMachines/{name}"
        )
        vm = self.vms.get(vm_id.lower())
        if vm is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource "
                f"group '{group}' was not found.",
            )
        return vm

    def power_state(self, vm_id: str) -> str:
        """The power state the instance view reports now (without consuming it)."""
        return self.power[vm_id.lower()][0]

    def set_power(self, vm_id: str, *states: str) -> None:
        """The states the next instance-view reads report, one each; the last one stays."""
        self.power[vm_id.lower()] = list(states)

    def _vm_action(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        vm = self._vm(match["sub"], match["rg"], match["name"])
        key = vm["id"].lower()
        action = match["action"].lower()
        if key in self.power_sources:
            self.power[key] = [self.power_sources[key]()]
        states = self.power[key]
        if action == "instanceview":
            # Reading the instance view is covered by the VM's read permission.
            self._deny("Microsoft.Compute/virtualMachines/read", vm["id"], principal)
            state = states.pop(0) if len(states) > 1 else states[0]
            statuses = [
                {"code": "ProvisioningState/succeeded", "level": "Info"},
                {"code": state, "level": "Info", "displayStatus": "VM " + state.split("/")[1]},
            ]
            if key in self.generalized:
                statuses.append({"code": "OSState/generalized", "level": "Info"})
            os_disk = self.disks[
                vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"].lower()
            ]
            return (
                200,
                {},
                {
                    "computerName": vm["name"],
                    "hyperVGeneration": os_disk["properties"].get("hyperVGeneration", "V1"),
                    "statuses": statuses,
                },
            )
        if action == "deallocate":
            self._deny("Microsoft.Compute/virtualMachines/deallocate/action", vm["id"], principal)
            self.power_sources.pop(key, None)  # ARM owns the state from here
            self.power[key] = ["PowerState/deallocating"]

            def finish() -> None:
                self.power[key] = ["PowerState/deallocated"]

            return self._start_job("deallocate", vm["location"], query, finish, lambda: None, None)
        # generalize: synchronous; ARM refuses it while the VM runs.
        self._deny("Microsoft.Compute/virtualMachines/generalize/action", vm["id"], principal)
        if states[0] not in _OFF:
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Operation 'generalize' is not allowed on VM '{vm['name']}' since the VM is "
                f"{states[0].split('/')[1]}.",
            )
        self.generalized.add(key)
        return 200, {}, None

    def _start_job(
        self,
        kind: str,
        location: str,
        query: dict[str, str],
        finish: Any,
        fail: Any,
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        op = str(uuid.uuid4())
        resource = str(body["id"]).lower() if isinstance(body, dict) and "id" in body else None
        self.jobs[op] = _Job(kind, _now(), finish, fail, resource)
        status_url = (
            f"{self.endpoint}/subscriptions/{self.subscription}/providers/Microsoft.Compute/"
            f"locations/{location}/operations/{op}?api-version={query['api-version']}"
        )
        headers = {"Azure-AsyncOperation": status_url, "Location": f"{status_url}&monitor=true"}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return (201 if body is not None else 202), headers, body

    def _get_job(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        job = self.jobs.get(match["op"])
        if job is None:
            raise ArmError(404, "OperationNotFound", f"Operation {match['op']} not found.")
        status: dict[str, Any] = {"name": match["op"], "startTime": job.started}
        state = self._advance(job)
        if state == "InProgress":
            headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
            return 200, headers, status | {"status": "InProgress"}
        if "monitor" in query and state == "Succeeded" and job.output is not None:
            return 200, {}, job.output  # the Location: the operation's result
        status |= {"endTime": job.ended, "status": state}
        if state == "Failed":
            code, message = self.fail_jobs[job.kind]
            status["error"] = {"code": code, "message": message}
        return 200, {}, status

    def _advance(self, job: _Job) -> str:
        """One look at an operation (its status, or its resource): InProgress, then the end.

        ARM moves an operation on whether or not anyone asks; the fake moves it on each
        time a client looks, ``in_progress_polls`` looks before it ends.
        """
        if job.ended is not None:
            return "Failed" if job.kind in self.fail_jobs else "Succeeded"
        job.polls += 1
        if job.polls <= self.slow_jobs.get(job.kind, self.in_progress_polls):
            return "InProgress"
        job.ended = _now()
        if job.kind in self.fail_jobs:
            job.fail()
            return "Failed"
        job.finish()
        return "Succeeded"

    def _advance_resource(self, resource_id: str) -> None:
        for job in self.jobs.values():
            if job.resource == resource_id.lower():
                self._advance(job)

    def _get_disk(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        self._check_group(match["rg"])
        disk = self.disks.get(match.group(0).lower())
        if disk is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/disks/{match['name']}' under resource "
                f"group '{match['rg']}' was not found.",
            )
        return 200, {}, disk

    def _get_gallery_image(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        self._check_group(match["rg"])
        image = self.gallery_images.get(match.group(0).lower())
        if image is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/galleries/{match['gallery']}/images/"
                f"{match['name']}' under resource group '{match['rg']}' was not found.",
            )
        return 200, {}, image

    def _get_version(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        self._check_group(match["rg"])
        self._advance_resource(match.group(0))
        version = self.gallery_versions.get(match.group(0).lower())
        if version is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/galleries/{match['gallery']}/images/"
                f"{match['image']}/versions/{match['name']}' under resource group "
                f"'{match['rg']}' was not found.",
            )
        return 200, {}, version

    def _source_vm(self, source_id: Any, location: str | None) -> dict[str, Any]:
        vm = self.vms.get(str(source_id or "").lower())
        if vm is None:
            raise ArmError(404, "NotFound", f"Source virtual machine '{source_id}' not found.")
        if vm["id"].lower() not in self.generalized:
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"The operation cannot be completed because the source virtual machine "
                f"'{vm['name']}' is not generalized.",
            )
        if self.power[vm["id"].lower()][0] not in _OFF:
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Source virtual machine '{vm['name']}' must be stopped or deallocated.",
            )
        if location is not None and location.lower() != vm["location"].lower():
            raise ArmError(
                400,
                "InvalidParameter",
                f"The image location '{location}' differs from the source virtual "
                f"machine's location '{vm['location']}'.",
            )
        return vm

    def _put_version(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        version_id = match.group(0)
        self._deny("Microsoft.Compute/galleries/images/versions/write", version_id, principal)
        self._check_group(match["rg"])
        self._check_new_version(match, version_id, body)
        properties = body.get("properties") or {}
        source = (properties.get("storageProfile") or {}).get("source") or {}
        self._source_vm(source.get("virtualMachineId"), None)
        version = {
            "name": match["name"],
            "id": version_id,
            "type": "Microsoft.Compute/galleries/images/versions",
            "location": body["location"],
            "tags": dict(body.get("tags") or {}),
            "properties": {
                "publishingProfile": _publishing_profile(body, properties),
                "storageProfile": {"source": source},
                "provisioningState": "Creating",
            },
        }
        self.gallery_versions[version_id.lower()] = version

        def finish() -> None:
            version["properties"]["provisioningState"] = "Succeeded"

        def fail() -> None:
            version["properties"]["provisioningState"] = "Failed"

        return self._start_job("version", body["location"], query, finish, fail, version)

    def _check_new_version(self, match: re.Match[str], version_id: str, body: Any) -> None:
        """The image exists, the name is a version, it is new, and it is in the image's region."""
        image_id = version_id.rsplit("/versions/", 1)[0]
        image = self.gallery_images.get(image_id.lower())
        if image is None:
            raise ArmError(
                404, "GalleryImageNotFound", f"Gallery image '{match['image']}' not found."
            )
        if not _VERSION_NAME.fullmatch(match["name"]):
            raise ArmError(
                400,
                "InvalidParameter",
                f"The gallery image version name '{match['name']}' is invalid: it must follow "
                "the Major(int).Minor(int).Patch(int) format.",
            )
        if version_id.lower() in self.gallery_versions:
            raise ArmError(
                409,
                "PropertyChangeNotAllowed",
                "Changing property 'galleryImageVersion.properties.storageProfile.source' "
                "is not allowed.",
            )
        if not isinstance(body, dict) or not body.get("location"):
            raise ArmError(
                400, "LocationRequired", "The location property is required for this definition."
            )
        if str(body["location"]).lower() != image["location"].lower():
            raise ArmError(
                400,
                "InvalidParameter",
                "A gallery image version must be created in its gallery's region "
                f"'{image['location']}'.",
            )

    def _delete_version(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        key = match.group(0).lower()
        self._deny("Microsoft.Compute/galleries/images/versions/delete", match.group(0), principal)
        version = self.gallery_versions.get(key)
        if version is None:
            return 204, {}, None
        version["properties"]["provisioningState"] = "Deleting"
        return self._start_job(
            "delete",
            version["location"],
            query,
            lambda: self.gallery_versions.pop(key, None),
            lambda: None,
            None,
        )

    def _get_image(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        self._check_group(match["rg"])
        self._advance_resource(match.group(0))
        image = self.images.get(match.group(0).lower())
        if image is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/images/{match['name']}' under resource "
                f"group '{match['rg']}' was not found.",
            )
        return 200, {}, image

    def _put_image(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        image_id = match.group(0)
        self._deny("Microsoft.Compute/images/write", image_id, principal)
        self._check_group(match["rg"])
        if image_id.lower() in self.images:
            raise ArmError(
                409,
                "PropertyChangeNotAllowed",
                "Changing property 'sourceVirtualMachine' is not allowed.",
            )
        if not isinstance(body, dict) or not body.get("location"):
            raise ArmError(
                400, "LocationRequired", "The location property is required for this definition."
            )
        properties = body.get("properties") or {}
        source = properties.get("sourceVirtualMachine") or {}
        vm = self._source_vm(source.get("id"), str(body["location"]))
        if (vm["properties"].get("securityProfile") or {}).get("securityType"):
            raise ArmError(
                400,
                "InvalidParameter",
                "Managed images are not supported for virtual machines with security type "
                f"'{vm['properties']['securityProfile']['securityType']}'.",
            )
        image = {
            "name": match["name"],
            "id": image_id,
            "type": "Microsoft.Compute/images",
            "location": body["location"],
            "tags": dict(body.get("tags") or {}),
            "properties": {
                "sourceVirtualMachine": {"id": vm["id"]},
                "hyperVGeneration": properties.get("hyperVGeneration", "V1"),
                "provisioningState": "Creating",
            },
        }
        self.images[image_id.lower()] = image

        def finish() -> None:
            image["properties"]["provisioningState"] = "Succeeded"

        def fail() -> None:
            image["properties"]["provisioningState"] = "Failed"

        return self._start_job("image", image["location"], query, finish, fail, image)

    def _delete_image(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        key = match.group(0).lower()
        self._deny("Microsoft.Compute/images/delete", match.group(0), principal)
        image = self.images.get(key)
        if image is None:
            return 204, {}, None
        return self._start_job(
            "delete",
            image["location"],
            query,
            lambda: self.images.pop(key, None),
            lambda: None,
            None,
        )

    # -- direct upload: disks created for upload, write access, Put Page --------------------

    def _put_disk(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        disk_id = match.group(0)
        self._deny("Microsoft.Compute/disks/write", disk_id, principal)
        self._check_group(match["rg"])
        if disk_id.lower() in self.disks:
            raise ArmError(409, "Conflict", f"Disk '{match['name']}' already exists.")
        size = _upload_size(body)
        properties = body.get("properties") or {}
        disk = {
            "name": match["name"],
            "id": disk_id,
            "type": "Microsoft.Compute/disks",
            "location": body["location"],
            "sku": {"name": (body.get("sku") or {}).get("name", "Standard_LRS")},
            "tags": dict(body.get("tags") or {}),
            "properties": {
                "creationData": {"createOption": "Upload", "uploadSizeBytes": size},
                "diskSizeGB": -(-(size - 512) // (1 << 30)),
                "diskSizeBytes": size - 512,
                "uniqueId": str(uuid.uuid4()),
                "provisioningState": "Updating",
                "diskState": "ReadyToUpload",
                "timeCreated": _now(),
            }
            | {
                k: properties[k]
                for k in ("osType", "hyperVGeneration", "supportedCapabilities", "securityProfile")
                if k in properties
            },
        }
        if body.get("zones"):
            disk["zones"] = body["zones"]
        self.disks[disk_id.lower()] = disk
        self.resource_groups.add(match["rg"].lower())

        def finish() -> None:
            disk["properties"]["provisioningState"] = "Succeeded"

        # Disks answer a PUT with 202 Accepted and the disk (Microsoft.Compute/disks REST).
        _, headers, payload = self._start_job(
            "disk", disk["location"], query, finish, lambda: None, disk
        )
        return 202, headers, payload

    def _disk_access(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        disk_id = match.group(0).rsplit("/", 1)[0]
        disk = self.disks.get(disk_id.lower())
        if disk is None:
            raise ArmError(404, "ResourceNotFound", f"Disk '{match['name']}' not found.")
        props = disk["properties"]
        if match["action"].lower() == "endgetaccess":
            self._deny("Microsoft.Compute/disks/endGetAccess/action", disk_id, principal)

            def revoke() -> None:
                self.sigs.pop(disk_id.lower(), None)
                if props["diskState"] in ("ActiveUpload", "ReadyToUpload"):
                    props["diskState"] = "Unattached"  # an upload disk is done once revoked

            return self._start_job("revoke", disk["location"], query, revoke, lambda: None, None)
        self._deny("Microsoft.Compute/disks/beginGetAccess/action", disk_id, principal)
        if not isinstance(body, dict) or body.get("access") != "Write":
            raise ArmError(400, "InvalidParameter", "This fake grants Write access only.")
        regrant = props["diskState"] == "ActiveUpload" and self.regrant_active_upload
        if props["diskState"] != "ReadyToUpload" and not regrant:
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Disk '{disk['name']}' is in state '{props['diskState']}'; write access is "
                "granted only to a disk in state 'ReadyToUpload'.",
            )
        sig = uuid.uuid4().hex
        self.sigs[disk_id.lower()] = sig
        props["diskState"] = "ActiveUpload"
        sas = (
            f"{self.endpoint}/blobs/{props['uniqueId']}/abcd?sv=2018-03-28&sr=b"
            f"&si={uuid.uuid4()}&sig={sig}"
        )
        status, headers, _ = self._start_job(
            "grant", disk["location"], query, lambda: None, lambda: None, None
        )
        job = self.jobs[next(reversed(self.jobs))]
        job.output = {"accessSAS": sas}
        return status, headers, None

    def _patch_disk(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        """Disks - Update (PATCH): this fake changes tags only, and refuses anything else."""
        disk_id = match.group(0)
        self._deny("Microsoft.Compute/disks/write", disk_id, principal)
        disk = self.disks.get(disk_id.lower())
        if disk is None:
            raise ArmError(404, "ResourceNotFound", f"Disk '{match['name']}' not found.")
        if not isinstance(body, dict) or set(body) - {"tags"}:
            raise ArmError(400, "InvalidParameter", "This fake updates a disk's tags only.")
        disk["tags"] = dict(body.get("tags") or {})
        _, headers, payload = self._start_job(
            "disk", disk["location"], query, lambda: None, lambda: None, disk
        )
        return 202, headers, payload

    def _delete_disk(
        self, match: re.Match[str], query: dict[str, str], body: Any, principal: Principal
    ) -> tuple[int, dict[str, str], Any]:
        """Disks - Delete: refused while a VM holds the disk or a SAS is active on it."""
        key = match.group(0).lower()
        self._deny("Microsoft.Compute/disks/delete", match.group(0), principal)
        disk = self.disks.get(key)
        if disk is None:
            return 204, {}, None
        state = disk["properties"].get("diskState")
        if state in ("Attached", "Reserved") or key in self.sigs:
            # Azure's wording is not documented; the 409 is what a disk in use answers.
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Disk '{disk['name']}' is in state '{state}' and cannot be deleted.",
            )

        def finish() -> None:
            self.disks.pop(key, None)
            self.pages.pop(key, None)

        return self._start_job("delete", disk["location"], query, finish, lambda: None, None)

    def _put_page(
        self,
        method: str,
        unique_id: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], Any]:
        disk = next(
            (d for d in self.disks.values() if d["properties"].get("uniqueId") == unique_id), None
        )
        props = disk["properties"] if disk else {}
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and "/blobs/" in fault.pattern:
                fault.times -= 1
                return fault.status, {}, _storage_error("InjectedFault", "Injected failure.")
        sig = self.sigs.get(disk["id"].lower()) if disk else None
        if disk is None or sig is None or query.get("sig") != sig:
            return (
                403,
                {},
                _storage_error(
                    "AuthenticationFailed",
                    "Server failed to authenticate the request. Make sure the value of "
                    "Authorization header is formed correctly including the signature.",
                ),
            )
        if method != "PUT" or query.get("comp") != "page":
            return 400, {}, _storage_error("InvalidQueryParameterValue", "Only Put Page here.")
        if headers.get("x-ms-page-write") != "update":
            return 400, {}, _storage_error("InvalidHeaderValue", "x-ms-page-write: update only.")
        found = re.fullmatch(r"bytes=(\d+)-(\d+)", headers.get("x-ms-range") or "")
        if found is None:
            return 400, {}, _storage_error("MissingRequiredHeader", "x-ms-range is required.")
        start, end = int(found[1]), int(found[2])
        length = end - start + 1
        size = props["creationData"]["uploadSizeBytes"]
        if start % 512 or length % 512 or length > 4 * MIB or end >= size or len(body) != length:
            return (
                416,
                {},
                _storage_error(
                    "InvalidPageRange", f"The page range bytes={start}-{end} is invalid."
                ),
            )
        self.pages.setdefault(disk["id"].lower(), {})[start] = (
            bytes(body) if self.keep_pages else b""
        )
        self.page_requests.append((disk["id"].lower(), start, length))
        return (
            201,
            {
                "ETag": f'"0x{uuid.uuid4().hex[:16].upper()}"',
                "Last-Modified": "Wed, 02 Dec 2026 10:00:00 GMT",
                "x-ms-blob-sequence-number": "0",
                "x-ms-request-server-encrypted": "true",
                "x-ms-version": "2025-01-05",
            },
            None,
        )


def _vm_properties(
    name: str,
    group_id: str,
    os_type: str,
    os_disk: dict[str, Any],
    data_disks: list[dict[str, Any]],
) -> dict[str, Any]:
    """A running VM's properties: size, disks, OS profile, one NIC."""
    return {
        "vmId": str(uuid.uuid4()),
        "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
        "storageProfile": _storage_profile(os_type, os_disk, data_disks),
        "osProfile": {
            "computerName": name,
            "adminUsername": "azureuser",
            "linuxConfiguration": {"disablePasswordAuthentication": True},
            "secrets": [],
        },
        "networkProfile": {
            "networkInterfaces": [
                {"id": f"{group_id}/providers/Microsoft.Network/networkInterfaces/{name}-nic"}
            ]
        },
        "provisioningState": "Succeeded",
        "timeCreated": _now(),
    }


def _storage_profile(
    os_type: str, os_disk: dict[str, Any], data_disks: list[dict[str, Any]]
) -> dict[str, Any]:
    """A VM's storageProfile: a marketplace Debian image, the OS disk, the data disks."""
    return {
        "imageReference": {
            "publisher": "Debian",
            "offer": "debian-12",
            "sku": "12-gen2",
            "version": "latest",
            "exactVersion": "0.20250101.1",
        },
        "osDisk": {
            "osType": os_type,
            "name": os_disk["name"],
            "createOption": "FromImage",
            "caching": "ReadWrite",
            "managedDisk": {
                "storageAccountType": "Premium_LRS",
                "id": os_disk["id"],
            },
            "deleteOption": "Delete",
            "diskSizeGB": 30,
        },
        "dataDisks": data_disks,
        "diskControllerType": "SCSI",
    }


def _upload_size(body: Any) -> int:
    """The uploadSizeBytes of an upload disk's PUT body, checked as ARM checks it."""
    if not isinstance(body, dict) or not body.get("location"):
        raise ArmError(
            400, "LocationRequired", "The location property is required for this definition."
        )
    creation = (body.get("properties") or {}).get("creationData") or {}
    size = creation.get("uploadSizeBytes")
    if creation.get("createOption") != "Upload" or not isinstance(size, int):
        raise ArmError(
            400,
            "InvalidParameter",
            "This fake makes upload disks only: creationData.createOption 'Upload' with "
            "uploadSizeBytes.",
        )
    if size < MIN_UPLOAD or (size - 512) % MIB:
        raise ArmError(
            400,
            "InvalidParameter",
            f"uploadSizeBytes {size} must be at least {MIN_UPLOAD} and 512 bytes more "
            "than a whole number of MiB.",
        )
    return size


def _snapshot_properties(source: dict[str, Any], incremental: bool) -> dict[str, Any]:
    """A new snapshot's properties: a copy of ``source``'s size, OS type and generation."""
    properties: dict[str, Any] = {
        "creationData": {
            "createOption": "Copy",
            "sourceResourceId": source["id"],
            "sourceUniqueId": source["properties"]["uniqueId"],
        },
        "diskSizeGB": source["properties"]["diskSizeGB"],
        "diskSizeBytes": source["properties"]["diskSizeBytes"],
        "uniqueId": str(uuid.uuid4()),
        "incremental": incremental,
        "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
        "networkAccessPolicy": "AllowAll",
        "publicNetworkAccess": "Enabled",
        "provisioningState": "Creating",
        "timeCreated": _now(),
    }
    if incremental:
        properties["incrementalSnapshotFamilyId"] = str(uuid.uuid4())
    for key in ("osType", "hyperVGeneration"):
        if key in source["properties"]:
            properties[key] = source["properties"][key]
    return properties


def _publishing_profile(body: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """A version's publishingProfile; its target regions must include the gallery's."""
    publishing = dict(properties.get("publishingProfile") or {})
    regions = publishing.get("targetRegions") or [{"name": body["location"]}]
    if not any(r["name"].lower() == str(body["location"]).lower() for r in regions):
        raise ArmError(
            400,
            "InvalidParameter",
            f"The target regions must include the gallery's region '{body['location']}'.",
        )
    return publishing | {"targetRegions": regions, "publishedDate": _now()}


def _storage_error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()


def _handler_for(arm: FakeArm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = arm.handle(self.command, self.path, headers, body)
            xml = isinstance(payload, bytes)
            data = payload if xml else (b"" if payload is None else json.dumps(payload).encode())
            self.send_response(status)
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for key, value in extra.items():
                self.send_header(key, value)
            if data:
                kind = "application/xml" if xml else "application/json; charset=utf-8"
                self.send_header("Content-Type", kind)
                if xml:
                    self.send_header(
                        "x-ms-error-code", data.split(b"<Code>")[1].split(b"<")[0].decode()
                    )
            self.send_header("Content-Length", str(len(data)))
            try:
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client went away (a test killed it mid-upload)
                self.close_connection = True

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
