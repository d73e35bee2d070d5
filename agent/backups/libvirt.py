"""``libvirt:DOMAIN[?uri=URI&snapshot=NAME]`` — a libvirt snapshot of the VM's domain.

DOMAIN is the libvirt domain name (``virsh list --all``). ``uri`` is the connection URI
(``qemu:///system``, ``qemu+ssh://root@kvm-host/system``, ...; percent-encode a URI that
has its own ``?`` or ``&``); without it libvirt picks its default, as virsh does
(``LIBVIRT_DEFAULT_URI``, then the local hypervisor). ``snapshot`` names the snapshot
(default ``imageprep-RUN_ID``).

The snapshot is libvirt's default kind, taken atomically: for a running QEMU domain an
internal snapshot of every qcow2 disk plus the memory state, which ``virsh snapshot-revert``
restores. libvirt-python comes from the optional extra ``pip install 'imageprep-agent[libvirt]'``
and is imported only when this scheme is used.
"""

from __future__ import annotations

import shlex
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import libvirt

from agent.backups.base import BackupContext, BackupRecord, utc_timestamp
from agent.errors import BackupError, UsageError
from agent.executors.base import Executor

SCHEME = "libvirt"
_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def _ignore_libvirt_errors(_context: Any, _error: Any) -> None:
    """libvirt prints every error to stderr by default; we raise them with context instead."""


libvirt.registerErrorHandler(_ignore_libvirt_errors, None)


@dataclass(frozen=True)
class LibvirtSpec:
    domain: str
    uri: str | None = None
    snapshot: str | None = None


def parse_arg(arg: str) -> LibvirtSpec:
    domain, _, query = arg.strip().partition("?")
    if not domain:
        raise UsageError(f"--backup {SCHEME}:{arg}: expected DOMAIN[?uri=URI&snapshot=NAME]")
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in ("uri", "snapshot") or not value:
            raise UsageError(
                f"--backup {SCHEME}: unknown or empty option {key}={value!r} "
                "(known: uri=URI, snapshot=NAME)"
            )
        options[key] = value
    snapshot = options.get("snapshot")
    if snapshot is not None and ("/" in snapshot or snapshot.startswith(".")):
        raise UsageError(f"--backup {SCHEME}: snapshot name {snapshot!r} may not hold '/'")
    return LibvirtSpec(domain, options.get("uri"), snapshot)


def restore_hint(uri: str, domain: str, snapshot: str) -> str:
    q = shlex.quote
    return f"virsh --connect {q(uri)} snapshot-revert {q(domain)} {q(snapshot)}"


class LibvirtProvider:
    scheme = SCHEME

    def __init__(self, spec: LibvirtSpec) -> None:
        self.spec = spec

    def describe(self) -> str:
        where = self.spec.uri or "libvirt's default URI"
        return f"{SCHEME}: snapshot of domain {self.spec.domain} on {where}"

    def take(self, executor: Executor, context: BackupContext) -> BackupRecord:
        """Snapshot the domain; ``executor`` is unused: the hypervisor takes the snapshot."""
        spec = self.spec
        name = spec.snapshot or f"imageprep-{context.run_id}"
        created_at = utc_timestamp()
        started = time.monotonic()
        conn = self._connect()
        try:
            uri = conn.getURI()
            domain = self._lookup(conn, uri)
            state = _STATES.get(domain.state()[0], "unknown")
            description = (
                f"imageprep run {context.run_id}: before preparing {context.target.display}"
            )
            xml = (
                f"<domainsnapshot><name>{escape(name)}</name>"
                f"<description>{escape(description)}</description></domainsnapshot>"
            )
            try:
                snapshot = domain.snapshotCreateXML(xml, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
                snapshot_xml = snapshot.getXMLDesc(0)
            except libvirt.libvirtError as exc:
                raise BackupError(
                    f"{SCHEME}: snapshot {name} of domain {spec.domain} on {uri} failed: "
                    f"{_message(exc)}"
                ) from exc
            details = {
                "uri": uri,
                "domain": spec.domain,
                "domain_uuid": domain.UUIDString(),
                "snapshot": name,
                "domain_state": state,
                **_snapshot_facts(snapshot_xml),
            }
        finally:
            conn.close()
        return BackupRecord(
            provider=SCHEME,
            reference=f"{spec.domain}/{name}",
            created_at=created_at,
            duration=time.monotonic() - started,
            details=details,
            restore_hint=restore_hint(uri, spec.domain, name),
        )

    def _connect(self) -> Any:
        where = self.spec.uri or "libvirt's default URI"
        try:
            return libvirt.open(self.spec.uri)
        except libvirt.libvirtError as exc:
            raise BackupError(f"{SCHEME}: cannot connect to {where}: {_message(exc)}") from exc

    def _lookup(self, conn: Any, uri: str) -> Any:
        try:
            return conn.lookupByName(self.spec.domain)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise BackupError(
                    f"{SCHEME}: no domain named {self.spec.domain!r} on {uri} "
                    f"(virsh --connect {uri} list --all shows the domains)"
                ) from exc
            raise BackupError(
                f"{SCHEME}: cannot look up domain {self.spec.domain} on {uri}: {_message(exc)}"
            ) from exc


def _message(exc: Any) -> str:
    return str(exc.get_error_message() or exc).strip()


def _snapshot_facts(snapshot_xml: str) -> dict[str, str]:
    """What kind of snapshot libvirt made: memory and per-disk snapshot modes."""
    root = ET.fromstring(snapshot_xml)  # noqa: S314  libvirt's own output
    facts = {"snapshot_state": root.findtext("state") or ""}
    memory = root.find("memory")
    if memory is not None:
        facts["memory"] = memory.get("snapshot", "")
    disks = [f"{d.get('name')}={d.get('snapshot')}" for d in root.iterfind("disks/disk")]
    if disks:
        facts["disks"] = ", ".join(disks)
    return facts


def from_arg(arg: str) -> LibvirtProvider:
    return LibvirtProvider(parse_arg(arg))
