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


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class ArmError(Exception):
    """An ARM error response: HTTP status and the ``{"error": {code, message}}`` body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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
    ) -> None:
        self.subscription = subscription
        self.in_progress_polls = in_progress_polls  # status answers "InProgress" this often
        self.retry_after = retry_after
        self.fail_operations: tuple[str, str] | None = None  # (code, message) for "Failed"
        self.tokens: dict[str, Principal] = {"fake-arm-token": Principal()}
        self.resource_groups: set[str] = set()
        self.disks: dict[str, dict[str, Any]] = {}
        self.vms: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, _Operation] = {}
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
    ) -> str:
        """A Linux VM with a managed OS disk and data disks at the given LUNs; its id."""
        os_disk = self.add_disk(
            group,
            f"{name}_OsDisk_1_{uuid.uuid4().hex}",
            location=location,
            size_gb=30,
            os_type="Linux",
        )
        data_disks = []
        for lun in data_disk_luns:
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
        vm_id = f"{self._group_id(group)}/providers/Microsoft.Compute/virtualMachines/{name}"
        vm: dict[str, Any] = {
            "name": name,
            "id": vm_id,
            "type": "Microsoft.Compute/virtualMachines",
            "location": location,
            "tags": {},
            "properties": {
                "vmId": str(uuid.uuid4()),
                "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
                "storageProfile": {
                    "imageReference": {
                        "publisher": "Debian",
                        "offer": "debian-12",
                        "sku": "12-gen2",
                        "version": "latest",
                        "exactVersion": "0.20250101.1",
                    },
                    "osDisk": {
                        "osType": "Linux",
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
                },
                "osProfile": {
                    "computerName": name,
                    "adminUsername": "azureuser",
                    "linuxConfiguration": {"disablePasswordAuthentication": True},
                    "secrets": [],
                },
                "networkProfile": {
                    "networkInterfaces": [
                        {
                            "id": f"{self._group_id(group)}/providers/Microsoft.Network/"
                            f"networkInterfaces/{name}-nic"
                        }
                    ]
                },
                "provisioningState": "Succeeded",
                "timeCreated": _now(),
            },
        }
        if zones:
            vm["zones"] = zones
        self.vms[vm_id.lower()] = vm
        return vm_id

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
                extra = {}
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
        for pattern, handler in (
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
        operation_id = str(uuid.uuid4())
        incremental = bool(body["properties"].get("incremental", False))
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
        self.snapshots[snapshot_id.lower()] = {
            "name": match["name"],
            "id": snapshot_id,
            "type": "Microsoft.Compute/snapshots",
            "location": location,
            "tags": dict(body.get("tags") or {}),
            "sku": {"name": "Standard_LRS", "tier": "Standard"},
            "properties": properties,
        }
        self.operations[operation_id] = _Operation(snapshot_id.lower(), _now())
        status_url = (
            f"{self.endpoint}/subscriptions/{self.subscription}/providers/Microsoft.Compute/"
            f"locations/{location}/DiskOperations/{operation_id}"
            f"?p={uuid.uuid4()}&api-version={query['api-version']}"
        )
        headers = {"Azure-AsyncOperation": status_url, "Location": f"{status_url}&monitor=true"}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return 202, headers, None

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


def _handler_for(arm: FakeArm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = arm.handle(self.command, self.path, headers, body)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for key, value in extra.items():
                self.send_header(key, value)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
