"""Azure's direct upload of a VHD into a new managed disk, with the real SDK clients.

The documented order: create the disk with ``createOption=Upload`` and the file's exact
size (``uploadSizeBytes``), grant write access (a SAS), write the pages with Put Page,
revoke the access, and the disk is an ordinary unattached disk. The SAS is a secret: it
is registered with the log redaction and never journaled or printed. Access is revoked
whatever happened, Ctrl-C included; a disk left half written is named in the message.

azure-mgmt-compute and azure-storage-blob come from the ``azure`` extra and are imported
only when ``imageprep upload`` runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.storage.blob import BlobClient

from agent.errors import PlatformError
from agent.secrets import REGISTRY

# Azure: uploadSizeBytes is at least 20 MiB + the 512-byte footer.
MIN_UPLOAD_SIZE = 20 * (1 << 20) + 512
IN_FLIGHT = 4  # Put Page requests at once


@dataclass(frozen=True)
class DiskShape:
    """What the image made from the disk will need; set on the disk at creation."""

    os_type: str = "Linux"
    hyper_v_generation: str = "V2"
    architecture: str = "x64"
    security_type: str = "Standard"  # or "TrustedLaunch"


@dataclass(frozen=True)
class UploadRecord:
    disk_id: str
    size: int
    bytes_sent: int
    ranges_sent: int
    disk_state: str
    seconds: float


class AzureDiskUploader:
    """Creates the upload disk, writes the ranges, revokes access, checks the disk."""

    def __init__(
        self,
        *,
        credential: TokenCredential | None = None,
        endpoint: str | None = None,
        connection_verify: bool | str = True,
        polling_interval: float = 5.0,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self._credential = credential
        self._endpoint = endpoint
        self._connection_verify = connection_verify
        self._polling_interval = polling_interval
        self.in_flight = in_flight

    def upload(
        self,
        target: Any,  # agent.upload.DiskTarget
        path: Path,
        size: int,
        ranges: Sequence[tuple[int, int]],
        shape: DiskShape,
        on_progress: Callable[[int], None] = lambda sent: None,
    ) -> UploadRecord:
        if size < MIN_UPLOAD_SIZE:
            raise PlatformError(
                f"azure-disk: {path} is {size} bytes; Azure takes uploads of at least "
                f"{MIN_UPLOAD_SIZE} bytes (20 MiB + the footer)"
            )
        started = time.monotonic()
        client = ComputeManagementClient(
            self._credential or DefaultAzureCredential(),
            target.subscription,
            connection_verify=self._connection_verify,
            polling_interval=self._polling_interval,
            **self._base_url(),
        )
        sas = self._create_for_upload(client, target, size, shape)
        sent = 0
        try:
            if not sas:
                raise PlatformError(
                    f"azure-disk: ARM granted access to disk {target.name} without a SAS"
                )
            sent = self._write(sas, path, ranges, on_progress, target.disk_id)
        except KeyboardInterrupt:
            raise
        finally:
            self._arm(
                f"revoke access to disk {target.name} (it is left partly written: "
                f"{target.disk_id})",
                "Microsoft.Compute/disks/endGetAccess/action",
                lambda: client.disks.begin_revoke_access(
                    target.resource_group, target.name
                ).result(),
            )
        state = self._check_uploaded(client, target, size)
        return UploadRecord(
            target.disk_id, size, sent, len(ranges), state, time.monotonic() - started
        )

    def _create_for_upload(self, client: Any, target: Any, size: int, shape: DiskShape) -> str:
        """Create the empty upload disk and get write access: its SAS ("" if ARM gave none)."""
        group, name = target.resource_group, target.name
        body: Any = _disk_body(target, size, shape)  # the REST shape, sent as is
        self._arm(
            f"create upload disk {name}",
            "Microsoft.Compute/disks/write",
            lambda: client.disks.begin_create_or_update(group, name, body).result(),
        )
        granted = self._arm(
            f"grant write access to disk {name}",
            "Microsoft.Compute/disks/beginGetAccess/action",
            lambda: client.disks.begin_grant_access(
                group, name, {"access": "Write", "durationInSeconds": 86400}
            ).result(),
        )
        sas = str(getattr(granted, "access_sas", None) or "")
        REGISTRY.add(sas)
        return sas

    def _check_uploaded(self, client: Any, target: Any, size: int) -> str:
        """The disk holds the VHD without its footer and is Unattached: its state."""
        name = target.name
        disk = self._arm(
            f"read disk {name}",
            "Microsoft.Compute/disks/read",
            lambda: client.disks.get(target.resource_group, name),
        )
        props = disk.properties
        state = str(getattr(props.disk_state, "value", props.disk_state)) if props else ""
        disk_bytes = props.disk_size_bytes if props else None
        if disk_bytes is not None and disk_bytes != size - 512:
            raise PlatformError(
                f"azure-disk: disk {name} holds {disk_bytes} bytes after the upload, "
                f"not {size - 512} (the VHD without its footer)"
            )
        if state != "Unattached":
            raise PlatformError(
                f"azure-disk: disk {name} is {state} after the upload, not Unattached"
            )
        return state

    def _base_url(self) -> dict[str, Any]:
        return {"base_url": self._endpoint} if self._endpoint else {}

    def _write(
        self,
        sas: str,
        path: Path,
        ranges: Sequence[tuple[int, int]],
        on_progress: Callable[[int], None],
        disk_id: str,
    ) -> int:
        blob = BlobClient.from_blob_url(sas, connection_verify=self._connection_verify)
        lock = threading.Lock()
        sent = 0

        def put(offset: int, length: int) -> None:
            nonlocal sent
            with path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read(length)
            blob.upload_page(data, offset=offset, length=length)
            with lock:
                sent += length
                on_progress(sent)

        pool = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="put-page")
        try:
            futures = [pool.submit(put, offset, length) for offset, length in ranges]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f.exception() for f in futures if f.done() and f.exception()), None)
        finally:
            # A failure or Ctrl-C: no new Put Page starts; the ones running end first.
            pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(failed, AzureError):
            raise PlatformError(
                f"azure-disk: writing pages failed ({_status(failed)}): "
                f"{_first(failed)}; access was revoked and disk {disk_id} is left "
                "partly written: delete it (az disk delete --ids DISK_ID) and upload again"
            ) from None  # the SAS may be in the exception's text
        if failed is not None:
            raise failed
        return sent

    def _arm(self, doing: str, action: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except AzureError as exc:
            status = _status(exc)
            if status.startswith("403"):
                raise PlatformError(
                    f"azure-disk: ARM refused action {action} ({status}) to {doing}"
                ) from exc
            raise PlatformError(f"azure-disk: could not {doing} ({status}): {_first(exc)}") from exc


def _disk_body(target: Any, size: int, shape: DiskShape) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "osType": shape.os_type,
        "hyperVGeneration": shape.hyper_v_generation,
        "supportedCapabilities": {"architecture": shape.architecture},
        "creationData": {"createOption": "Upload", "uploadSizeBytes": size},
    }
    if shape.security_type != "Standard":
        properties["securityProfile"] = {"securityType": shape.security_type}
    body: dict[str, Any] = {
        "location": target.location,
        "sku": {"name": target.sku},
        "properties": properties,
    }
    if target.zone:
        body["zones"] = [target.zone]
    return body


def _status(exc: AzureError) -> str:
    if isinstance(exc, HttpResponseError):
        code = getattr(getattr(exc, "error", None), "code", None) or getattr(
            exc, "error_code", None
        )
        return " ".join(str(x) for x in (exc.status_code, code) if x)
    return type(exc).__name__


def _first(exc: AzureError) -> str:
    text = str(getattr(getattr(exc, "error", None), "message", None) or exc.message or exc)
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
