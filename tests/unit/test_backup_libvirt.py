"""libvirt: real libvirt-python against libvirt's built-in test driver (in-process, no daemon)."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from agent.backups import BackupContext, provider_from_spec
from agent.backups.libvirt import LibvirtProvider, parse_arg
from agent.errors import BackupError, UsageError
from agent.targets import Target
from tests.local_executor import LocalShellExecutor

URI = "test:///default"
TARGET = Target(scheme="ssh", user="azureuser", host="golden-vm.example", port=22)


@pytest.fixture
def conn() -> Iterator[Any]:
    """A connection to the test driver; its state lives as long as the test process."""
    connection = libvirt.open(URI)
    yield connection
    connection.close()


@pytest.fixture
def domain(conn: Any) -> Iterator[str]:
    """A running domain of its own per test (the test driver's state is process-wide)."""
    name = f"golden-{uuid.uuid4().hex[:8]}"
    dom = conn.createXML(
        f"<domain type='test'><name>{name}</name><memory>131072</memory>"
        "<os><type>hvm</type></os></domain>",
        0,
    )
    yield name
    dom.destroy()


def _context(tmp_path: Path, run_id: str = "r42") -> BackupContext:
    return BackupContext(run_id=run_id, target=TARGET, paths=(), run_dir=tmp_path)


def _take(spec: str, tmp_path: Path, run_id: str = "r42") -> Any:
    provider = provider_from_spec(f"libvirt:{spec}")
    return provider.take(LocalShellExecutor(), _context(tmp_path, run_id))


def test_snapshot_of_the_domain_is_recorded(conn: Any, domain: str, tmp_path: Path) -> None:
    """The snapshot exists in libvirt, named after the run, with the domain's details."""
    record = _take(f"{domain}?uri={URI}", tmp_path)
    snapshot = conn.lookupByName(domain).snapshotLookupByName("imageprep-r42")
    assert "imageprep run r42: before preparing ssh://azureuser@golden-vm.example:22" in (
        snapshot.getXMLDesc(0)
    )
    assert record.provider == "libvirt"
    assert record.reference == f"{domain}/imageprep-r42"
    assert record.details["uri"] == URI
    assert record.details["domain_uuid"] == conn.lookupByName(domain).UUIDString()
    assert record.details["domain_state"] == "running"
    assert record.details["snapshot_state"] == "running"
    assert record.details["memory"] == "internal"


def test_restore_hint_is_virsh_snapshot_revert(domain: str, tmp_path: Path) -> None:
    """The restore hint is the virsh command reverting this domain to this snapshot."""
    record = _take(f"{domain}?uri={URI}&snapshot=before-capture", tmp_path)
    assert record.restore_hint == f"virsh --connect {URI} snapshot-revert {domain} before-capture"


def test_snapshot_can_be_reverted(conn: Any, domain: str, tmp_path: Path) -> None:
    """Reverting to the recorded snapshot brings a stopped domain back to running."""
    record = _take(f"{domain}?uri={URI}", tmp_path)
    dom = conn.lookupByName(domain)
    dom.suspend()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    dom.revertToSnapshot(dom.snapshotLookupByName(record.details["snapshot"]))
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_missing_domain_names_it(tmp_path: Path) -> None:
    """A domain that does not exist is a backup error naming it and the URI."""
    with pytest.raises(BackupError, match=r"no domain named 'no-such-vm' on test:///default"):
        _take(f"no-such-vm?uri={URI}", tmp_path)


def test_existing_snapshot_name_is_refused(domain: str, tmp_path: Path) -> None:
    """A second snapshot under the same name fails with libvirt's reason, not silently."""
    _take(f"{domain}?uri={URI}", tmp_path)
    with pytest.raises(BackupError, match=r"snapshot imageprep-r42 of domain .* failed: .*exists"):
        _take(f"{domain}?uri={URI}", tmp_path)


def test_unreachable_uri_is_a_backup_error(tmp_path: Path) -> None:
    """A connection URI libvirt cannot open fails the backup, naming the URI."""
    uri = f"test://{tmp_path}/no-such-driver-file.xml"
    with pytest.raises(BackupError, match=f"cannot connect to {uri}"):
        _take(f"vm?uri={uri}", tmp_path)


def test_recorded_duration_is_the_wall_time(domain: str, tmp_path: Path) -> None:
    """The record's duration covers the whole snapshot (printed: ms with the test driver)."""
    started = time.monotonic()
    record = _take(f"{domain}?uri={URI}", tmp_path)
    elapsed = time.monotonic() - started
    print(f"libvirt wall time against test:///default: {elapsed * 1000:.1f} ms")
    # No upper bound: speed is measured in bench/, never asserted (a loaded CI worker).
    assert 0 < record.duration <= elapsed


def test_arg_options_are_parsed() -> None:
    """DOMAIN, a percent-encoded uri and a snapshot name."""
    spec = parse_arg("golden?uri=qemu%2Bssh%3A%2F%2Froot%40kvm%2Fsystem%3Fkeyfile%3Dk&snapshot=s1")
    assert (spec.domain, spec.uri, spec.snapshot) == (
        "golden",
        "qemu+ssh://root@kvm/system?keyfile=k",
        "s1",
    )
    assert parse_arg("golden").uri is None


@pytest.mark.parametrize(
    ("arg", "message"), [("vm?url=x", "unknown or empty option"), ("?uri=x", "expected DOMAIN")]
)
def test_bad_arg_is_a_usage_error(arg: str, message: str) -> None:
    """A wrong ARG fails before libvirt is contacted."""
    with pytest.raises(UsageError, match=message):
        provider_from_spec(f"libvirt:{arg}")


def test_spec_selects_the_libvirt_provider() -> None:
    """libvirt:DOMAIN gives the libvirt provider."""
    provider = provider_from_spec("libvirt:golden?uri=qemu:///system")
    assert isinstance(provider, LibvirtProvider)
    assert provider.describe() == "libvirt: snapshot of domain golden on qemu:///system"


def test_missing_libvirt_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libvirt-python installed, the scheme says which pip extra to install."""
    monkeypatch.setitem(sys.modules, "libvirt", None)
    monkeypatch.delitem(sys.modules, "agent.backups.libvirt")
    with pytest.raises(UsageError, match=r"pip install 'imageprep-agent\[libvirt\]'"):
        provider_from_spec("libvirt:golden")
