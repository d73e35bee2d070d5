"""Azure's direct upload of a VHD into a new managed disk, with the real SDK clients.

The documented order: create the disk with ``createOption=Upload`` and the file's exact
size (``uploadSizeBytes``), grant write access (a SAS), write the pages with Put Page,
revoke the access, and the disk is an ordinary unattached disk. The SAS is a secret: it
is registered with the log redaction and never journaled or printed. Access is revoked
whatever happened, Ctrl-C included; a disk left half written is named in the message.

An upload disk's states, as Microsoft documents them ("Upload a VHD to Azure or copy a
managed disk to another region - Azure CLI", learn.microsoft.com/azure/virtual-machines/
linux/disks-upload-vhd-to-managed-disk-cli; the DiskState enum of the Compute REST API):

- ``ReadyToUpload``: created for upload, no SAS generated yet;
- ``ActiveUpload``: a write SAS has been generated and the disk takes Put Page;
- ``Unattached`` after ``revoke-access``: "Revoking the SAS changes the state of the
  managed disk and allow you to attach the disk to a VM"; and the disks FAQ
  (learn.microsoft.com/azure/virtual-machines/faq-for-disks, "Uploading to a managed
  disk"): upload "can only be used during the creation of a new empty disk with the
  ReadyToUpload state". So a revoked upload is final: a partial one is deleted and made
  again (``--replace``).

Granting write access again to a disk still in ``ActiveUpload`` is how a resumed upload
gets a new SAS. The 2019 version of the CLI page said so ("If your SAS expires during
upload, and you haven't called revoke-access yet, you can get a new SAS to continue the
upload using grant-access, again"); today's page no longer does. We rely on it, and if
ARM answers 409 the message says so and points to ``--replace``.

A disk this module creates is tagged ``imageprep-upload=incomplete`` with the VHD's
SHA-256 (agent.provenance), and ``complete`` once revoked and checked; with the record
beside the VHD (agent.upload_progress) a re-run resumes only its own, same-VHD upload.

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
from typing import Any, NoReturn

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.storage.blob import BlobClient

from agent.disks.image import sha256_of
from agent.errors import PlatformError, UsageError
from agent.provenance import TAG_UPLOAD, TAG_UPLOAD_SHA256, UPLOAD_COMPLETE, UPLOAD_INCOMPLETE
from agent.secrets import REGISTRY
from agent.upload_progress import (
    ProgressRecord,
    UploadIdentity,
    load_done,
    progress_path,
)

# Azure: uploadSizeBytes is at least 20 MiB + the 512-byte footer.
MIN_UPLOAD_SIZE = 20 * (1 << 20) + 512
IN_FLIGHT = 4  # Put Page requests at once
_UPLOADING = ("ReadyToUpload", "ActiveUpload")
_REVOKED = "revoked"  # an incomplete upload whose access was revoked (Unattached)
# A VM holds the disk (Reserved: attached to a deallocated VM): never deleted by --replace.
_IN_USE = ("Attached", "Reserved", "Frozen", "ActiveSASFrozen")


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
    resumed: bool = False  # an earlier run's ActiveUpload disk was written on
    already_uploaded: bool = False  # tagged complete: nothing was sent
    bytes_already_written: int = 0  # recorded by the earlier run, so not sent again
    ranges_already_written: int = 0
    replaced: bool = False  # --replace deleted an existing disk first


@dataclass(frozen=True)
class _Job:
    """One upload: the ARM client, where to, and when it started (for the record)."""

    client: Any
    target: Any
    path: Path
    size: int
    started: float

    def record(self, sent: int, ranges: int, state: str, **flags: Any) -> UploadRecord:
        seconds = time.monotonic() - self.started
        return UploadRecord(self.target.disk_id, self.size, sent, ranges, state, seconds, **flags)


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
        record_every: int = 64,
        record_interval: float = 1.0,
    ) -> None:
        self._credential = credential
        self._endpoint = endpoint
        self._connection_verify = connection_verify
        self._polling_interval = polling_interval
        self.in_flight = in_flight
        # OUT.vhd.upload.json is rewritten every this many ranges, or seconds
        self.record_every = record_every
        self.record_interval = record_interval

    def upload(
        self,
        target: Any,  # agent.upload.DiskTarget
        path: Path,
        size: int,
        ranges: Sequence[tuple[int, int]],
        shape: DiskShape,
        on_progress: Callable[[int, int], None] = lambda sent, total: None,
        *,
        sha256: str | None = None,
        replace: bool = False,
        record_path: Path | None = None,
    ) -> UploadRecord:
        """Create (or resume, or --replace) the upload disk and write ``ranges`` into it."""
        if size < MIN_UPLOAD_SIZE:
            raise PlatformError(
                f"azure-disk: {path} is {size} bytes; Azure takes uploads of at least "
                f"{MIN_UPLOAD_SIZE} bytes (20 MiB + the footer)"
            )
        job = _Job(self._client(target), target, path, size, time.monotonic())
        sha = sha256 or sha256_of(path)
        existing = self._read_disk(job.client, target)
        replaced = existing is not None and replace
        if replaced:
            self._delete(job.client, target, existing)
            existing = None
        verdict = _resumable(existing, target, sha, shape) if existing is not None else None
        if verdict == UPLOAD_COMPLETE:
            state = self._check_uploaded(job.client, target, size, expect=None)
            return job.record(0, 0, state, already_uploaded=True)
        disk = existing or self._create(job.client, target, size, shape, sha)
        identity = UploadIdentity(target.disk_id, str(disk.unique_id or ""), sha, size)
        records = record_path or progress_path(path)
        done = load_done(records, identity) & set(ranges) if existing is not None else frozenset()
        if verdict == _REVOKED:
            return self._finish_revoked(job, disk, records, done, len(ranges))
        record = ProgressRecord(
            records, identity, done, every=self.record_every, interval=self.record_interval
        )
        todo = [r for r in ranges if r not in done]
        sent = self._write_revoked(job.client, target, path, todo, on_progress, record, existing)
        state = self._check_uploaded(job.client, target, size)
        self._tag(job.client, target, disk, UPLOAD_COMPLETE)
        record.remove()
        return job.record(
            sent,
            len(todo),
            state,
            resumed=existing is not None,
            replaced=replaced,
            bytes_already_written=sum(length for _, length in done),
            ranges_already_written=len(done),
        )

    def _client(self, target: Any) -> Any:
        return ComputeManagementClient(
            self._credential or DefaultAzureCredential(),
            target.subscription,
            connection_verify=self._connection_verify,
            polling_interval=self._polling_interval,
            **self._base_url(),
        )

    def _finish_revoked(
        self,
        job: _Job,
        disk: Any,
        records: Path,
        done: frozenset[tuple[int, int]],
        wanted: int,
    ) -> UploadRecord:
        """A revoked, incomplete upload: finished if every range was written, else refused."""
        if len(done) < wanted:
            raise PlatformError(
                f"azure-disk: disk {job.target.disk_id} holds a partial upload whose write "
                "access was revoked, and Azure grants no write access after a revoke: "
                "`imageprep upload --replace` deletes it and uploads again"
            )
        # Every range was written before the revoke; only the check and the tag were
        # missing (e.g. the tag update failed): finish those, send nothing.
        state = self._check_uploaded(job.client, job.target, job.size)
        self._tag(job.client, job.target, disk, UPLOAD_COMPLETE)
        records.unlink(missing_ok=True)
        return job.record(
            0,
            0,
            state,
            resumed=True,
            already_uploaded=True,
            bytes_already_written=sum(length for _, length in done),
            ranges_already_written=len(done),
        )

    def _write_revoked(
        self,
        client: Any,
        target: Any,
        path: Path,
        todo: Sequence[tuple[int, int]],
        on_progress: Callable[[int, int], None],
        record: ProgressRecord,
        existing: Any,
    ) -> int:
        """Grant write access, write ``todo``, revoke whatever happened: the bytes sent."""
        record.flush()  # names this disk's uniqueId before any page is written
        sas = self._grant(client, target, again=existing is not None)
        try:
            if not sas:
                raise PlatformError(
                    f"azure-disk: ARM granted access to disk {target.name} without a SAS"
                )
            total = sum(length for _, length in todo)
            return self._write(
                sas, path, todo, lambda n: on_progress(n, total), target.disk_id, record
            )
        finally:
            record.flush()
            self._revoke(client, target)

    def _read_disk(self, client: Any, target: Any) -> Any:
        """The disk, or None if there is none by that name."""
        try:
            return client.disks.get(target.resource_group, target.name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            return self._arm_failed(exc, f"read disk {target.name}", "Microsoft.Compute/disks/read")

    def _create(self, client: Any, target: Any, size: int, shape: DiskShape, sha: str) -> Any:
        """Create the empty upload disk, tagged incomplete with the VHD's SHA-256."""
        group, name = target.resource_group, target.name
        body: Any = _disk_body(target, size, shape)  # the REST shape, sent as is
        body["tags"] = {TAG_UPLOAD: UPLOAD_INCOMPLETE, TAG_UPLOAD_SHA256: sha}
        disk = self._arm(
            f"create upload disk {name}",
            "Microsoft.Compute/disks/write",
            lambda: client.disks.begin_create_or_update(group, name, body).result(),
        )
        if getattr(disk, "unique_id", None):
            return disk
        return self._arm(
            f"read disk {name}",
            "Microsoft.Compute/disks/read",
            lambda: client.disks.get(group, name),
        )

    def _grant(self, client: Any, target: Any, again: bool) -> str:
        """Write access: its SAS ("" if ARM gave none), registered as a secret."""
        group, name = target.resource_group, target.name
        try:
            granted = client.disks.begin_grant_access(
                group, name, {"access": "Write", "durationInSeconds": 86400}
            ).result()
        except HttpResponseError as exc:
            if again and exc.status_code == 409:
                raise PlatformError(
                    f"azure-disk: ARM refused write access again to disk {target.disk_id} "
                    f"({_status(exc)}), left in ActiveUpload by an earlier run: "
                    "`imageprep upload --replace` deletes it and uploads again"
                ) from None
            self._arm_failed(
                exc,
                f"grant write access to disk {name}",
                "Microsoft.Compute/disks/beginGetAccess/action",
            )
        except AzureError as exc:
            self._arm_failed(
                exc,
                f"grant write access to disk {name}",
                "Microsoft.Compute/disks/beginGetAccess/action",
            )
        sas = str(getattr(granted, "access_sas", None) or "")
        REGISTRY.add(sas)
        return sas

    def _revoke(self, client: Any, target: Any) -> None:
        self._arm(
            f"revoke access to disk {target.name} (it is left partly written: {target.disk_id})",
            "Microsoft.Compute/disks/endGetAccess/action",
            lambda: client.disks.begin_revoke_access(target.resource_group, target.name).result(),
        )

    def _tag(self, client: Any, target: Any, disk: Any, mark: str) -> None:
        """Set ``imageprep-upload`` to ``mark``, keeping the disk's other tags."""
        tags = dict(getattr(disk, "tags", None) or {}) | {TAG_UPLOAD: mark}
        self._arm(
            f"tag disk {target.name} {TAG_UPLOAD}={mark}",
            "Microsoft.Compute/disks/write",
            lambda: client.disks.begin_update(
                target.resource_group, target.name, {"tags": tags}
            ).result(),
        )

    def _delete(self, client: Any, target: Any, disk: Any) -> None:
        """--replace: delete the existing disk (followed to its end); never one in use."""
        state = _state(disk)
        if state in _IN_USE:
            holder = getattr(disk, "managed_by", None)
            raise UsageError(
                f"--replace: disk {target.disk_id} is {state}"
                + (f" (attached to {holder})" if holder else " (attached to a VM)")
                + "; imageprep does not delete a disk in use: detach it or choose another name"
            )
        if state == "ActiveUpload" or state == "ActiveSAS":
            # A disk with an active SAS is not deleted (our assumption, modelled in the
            # fake); revoking first costs one call and is harmless on a disk we delete.
            self._revoke(client, target)
        self._arm(
            f"delete disk {target.name} (--replace)",
            "Microsoft.Compute/disks/delete",
            lambda: client.disks.begin_delete(target.resource_group, target.name).result(),
        )

    def _check_uploaded(
        self, client: Any, target: Any, size: int, *, expect: str | None = "Unattached"
    ) -> str:
        """The disk holds the VHD without its footer (and is ``expect``): its state."""
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
        if expect is not None and state != expect:
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
        record: ProgressRecord,
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
            record.mark(offset, length)  # only once Put Page succeeded
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
                "partly written: `imageprep upload --replace` deletes it and uploads again"
            ) from None  # the SAS may be in the exception's text
        if failed is not None:
            raise failed
        return sent

    def _arm(self, doing: str, action: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except AzureError as exc:
            self._arm_failed(exc, doing, action)

    @staticmethod
    def _arm_failed(exc: AzureError, doing: str, action: str) -> NoReturn:
        status = _status(exc)
        if status.startswith("403"):
            raise PlatformError(
                f"azure-disk: ARM refused action {action} ({status}) to {doing}"
            ) from exc
        raise PlatformError(f"azure-disk: could not {doing} ({status}): {_first(exc)}") from exc


def _state(disk: Any) -> str:
    props = getattr(disk, "disk_state", None)
    return str(getattr(props, "value", props) or "")


def _value(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def _shape_of(disk: Any) -> dict[str, str]:
    """What an existing disk says about the DiskShape it was created with (REST names)."""
    capabilities = getattr(disk, "supported_capabilities", None)
    security = getattr(disk, "security_profile", None)
    return {
        "osType": _value(getattr(disk, "os_type", None)),
        "hyperVGeneration": _value(getattr(disk, "hyper_v_generation", None)),
        "supportedCapabilities.architecture": _value(getattr(capabilities, "architecture", None)),
        "securityProfile.securityType": _value(getattr(security, "security_type", None))
        or "Standard",
    }


def _resumable(disk: Any, target: Any, sha: str, shape: DiskShape) -> str:
    """An existing disk at the target: UPLOAD_COMPLETE; UPLOAD_INCOMPLETE if this run may
    resume writing it; _REVOKED if it was revoked before it was complete; else UsageError
    (not ours, another VHD) or PlatformError."""
    tags = dict(getattr(disk, "tags", None) or {})
    mark, state = tags.get(TAG_UPLOAD), _state(disk)
    if mark not in (UPLOAD_INCOMPLETE, UPLOAD_COMPLETE):
        raise UsageError(
            f"--to: disk {target.disk_id} exists and was not made by imageprep upload "
            f"(no tag {TAG_UPLOAD}; it is {state or 'in an unknown state'}): "
            "--replace deletes it and uploads again"
        )
    theirs = tags.get(TAG_UPLOAD_SHA256) or "none"
    if theirs != sha:
        raise UsageError(
            f"--to: disk {target.disk_id} holds the upload of another VHD (tag "
            f"{TAG_UPLOAD_SHA256}={theirs[:16]}, this VHD {sha[:16]}): "
            "--replace deletes it and uploads again"
        )
    wanted = {
        "osType": shape.os_type,
        "hyperVGeneration": shape.hyper_v_generation,
        "supportedCapabilities.architecture": shape.architecture,
        "securityProfile.securityType": shape.security_type,
    }
    found = _shape_of(disk)
    for field, value in wanted.items():
        if found[field] and found[field].lower() != value.lower():
            raise UsageError(
                f"--to: disk {target.disk_id} was created with {field} {found[field]}, "
                f"not {value} as asked: --replace deletes it and uploads again"
            )
    if mark == UPLOAD_COMPLETE:
        return UPLOAD_COMPLETE
    if state in _UPLOADING:
        return UPLOAD_INCOMPLETE
    if state == "Unattached":
        return _REVOKED
    raise PlatformError(
        f"azure-disk: disk {target.disk_id} holds a partial upload and is {state}: "
        "`imageprep upload --replace` deletes it and uploads again"
    )


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
