"""imageprep upload: the real azure-mgmt-compute and azure-storage-blob clients, fake ARM."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent import console
from agent.cli import main
from agent.disks.image import MIB
from agent.errors import PlatformError
from agent.outcome import ExitCode
from agent.platforms import azure_disk
from agent.platforms.azure_disk import AzureDiskUploader
from agent.secrets import REGISTRY
from agent.upload import ProgressLine, parse_disk_target, upload_vhd
from tests.arm_fake import FakeArm, FakeTokenCredential
from tests.arm_fake.server import Fault
from tests.arm_fake.vhds import fixed_vhd, record_passed
from tests.winrm_server.certs import TlsFiles, make_tls_files

SUB = "00000000-0000-4000-8000-00000000abcd"
DISK_ID = f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/disks/gold-os"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1, made by the test."""
    return make_tls_files(tmp_path_factory.mktemp("arm-tls"))


@pytest.fixture
def arm(tls: TlsFiles) -> Iterator[FakeArm]:
    """The fake of ARM with an empty resource group for the disk."""
    fake = FakeArm(SUB, in_progress_polls=1)
    fake.resource_groups.add("images-rg")
    with fake.serving(tls):
        yield fake


def _uploader(arm: FakeArm, tls: TlsFiles) -> AzureDiskUploader:
    return AzureDiskUploader(
        credential=FakeTokenCredential(),
        endpoint=arm.endpoint,
        connection_verify=str(tls.ca_cert),
        polling_interval=0.01,
    )


@pytest.fixture
def vhd(tmp_path: Path) -> Path:
    """A 24 MiB fixed VHD with data in two 4 MiB ranges, and a passed record for it."""
    path = tmp_path / "gold.vhd"
    fixed_vhd(path, 24 * MIB)
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, b"\xeb\x63\x90boot", 0)
    os.pwrite(fd, os.urandom(4096), 13 * MIB)
    os.close(fd)
    record_passed(path, 24 * MIB, tmp_path / "source.raw")
    return path


def _upload(arm: FakeArm, tls: TlsFiles, vhd: Path, **shape: str) -> dict[str, object]:
    options = {
        "os_type": "Linux",
        "hyper_v_generation": "V2",
        "architecture": "x64",
        "security_type": "Standard",
    } | shape
    target = parse_disk_target(
        f"azure-disk:{DISK_ID}", location="westeurope", sku="Premium_LRS", zone="2"
    )
    return upload_vhd(
        vhd,
        target,
        force=False,
        uploader=_uploader(arm, tls),
        os_type=options["os_type"],
        hyper_v_generation=options["hyper_v_generation"],
        architecture=options["architecture"],
        security_type=options["security_type"],
    )


def test_only_non_zero_ranges_are_sent_and_land_where_they_belong(
    arm: FakeArm, tls: TlsFiles, vhd: Path
) -> None:
    """Two 4 MiB ranges and the footer are written: 8 MiB + 512 of 24 MiB, byte for byte."""
    summary = _upload(arm, tls, vhd)
    size = vhd.stat().st_size
    assert summary["bytes_sent"] == 8 * MIB + 512
    assert summary["skipped_zero_bytes"] == size - (8 * MIB + 512)
    pages = arm.pages[DISK_ID.lower()]
    assert sorted(pages) == [0, 12 * MIB, 24 * MIB]
    content = vhd.read_bytes()
    for offset, data in pages.items():
        assert content[offset : offset + len(data)] == data


def test_the_disk_is_created_for_upload_with_the_images_needs(
    arm: FakeArm, tls: TlsFiles, vhd: Path
) -> None:
    """createOption Upload with the exact size; OS type, generation, architecture, security."""
    _upload(arm, tls, vhd, security_type="TrustedLaunch", os_type="Windows")
    (put,) = arm.requests_to("PUT", "/disks/gold-os$")
    props = put.body["properties"]
    assert props["creationData"] == {"createOption": "Upload", "uploadSizeBytes": 24 * MIB + 512}
    assert props["osType"] == "Windows"
    assert props["hyperVGeneration"] == "V2"
    assert props["supportedCapabilities"] == {"architecture": "x64"}
    assert props["securityProfile"] == {"securityType": "TrustedLaunch"}
    assert put.body["zones"] == ["2"]
    assert put.body["sku"] == {"name": "Premium_LRS"}


def test_access_is_revoked_and_the_disk_checked(arm: FakeArm, tls: TlsFiles, vhd: Path) -> None:
    """Grant, pages, revoke (each LRO followed), then the disk reads Unattached."""
    summary = _upload(arm, tls, vhd)
    assert summary["disk_state"] == "Unattached"
    order = [
        r.path.rsplit("/", 1)[-1]
        for r in arm.requests
        if r.method == "POST" or (r.method == "PUT" and "/disks/" in r.path)
    ]
    assert order == ["gold-os", "beginGetAccess", "endGetAccess"]
    assert arm.sigs == {}  # the SAS no longer works


def test_a_failed_page_write_still_revokes_and_names_the_disk(
    arm: FakeArm, tls: TlsFiles, vhd: Path
) -> None:
    """Put Page refused: exit 12, access revoked, the partly written disk named, no SAS shown."""
    arm.faults.append(Fault("PUT", "/blobs/", 403, times=10))
    with pytest.raises(PlatformError) as caught:
        _upload(arm, tls, vhd)
    message = str(caught.value)
    assert "left partly written" in message
    assert DISK_ID in message
    assert arm.requests_to("POST", "/endGetAccess$")
    assert "sig=" not in message
    assert arm.disks[DISK_ID.lower()]["properties"]["diskState"] == "Unattached"


def test_the_sas_is_registered_as_a_secret(arm: FakeArm, tls: TlsFiles, vhd: Path) -> None:
    """The write SAS is known to the log redaction and absent from the summary."""
    summary = _upload(arm, tls, vhd)
    sas = [v for v in REGISTRY.values() if "/blobs/" in v]
    assert sas
    assert not any(s in json.dumps(summary) for s in sas)
    sig = sas[-1].rsplit("sig=", 1)[1]
    assert sig not in console.clean(f"a line with {sas[-1]}")


def test_a_disk_smaller_than_azure_takes_is_refused_before_anything(
    arm: FakeArm, tls: TlsFiles, tmp_path: Path
) -> None:
    """Azure's minimum upload is 20 MiB + 512: a 8 MiB VHD fails before ARM is asked."""
    small = tmp_path / "small.vhd"
    fixed_vhd(small, 8 * MIB)
    target = parse_disk_target(
        f"azure-disk:{DISK_ID}", location="westeurope", sku="Standard_LRS", zone=None
    )
    with pytest.raises(PlatformError, match="at least 20972032 bytes"):
        upload_vhd(
            small,
            target,
            force=True,
            uploader=_uploader(arm, tls),
            os_type="Linux",
            hyper_v_generation="V2",
            architecture="x64",
            security_type="Standard",
        )
    assert arm.requests == []


def test_cli_refuses_a_vhd_without_record_with_exit_3(arm: FakeArm, tmp_path: Path) -> None:
    """imageprep upload of a VHD that has no record: exit 3, nothing contacted."""
    bare = tmp_path / "bare.vhd"
    fixed_vhd(bare, 24 * MIB)
    result = CliRunner().invoke(
        main, ["upload", str(bare), "--to", f"azure-disk:{DISK_ID}", "--location", "westeurope"]
    )
    assert result.exit_code == ExitCode.PREFLIGHT_FAILED
    assert "has no bare.vhd.boot-test.json" in result.output
    assert arm.requests == []


def test_cli_uploads_and_prints_the_summary(
    arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """imageprep upload: exit 0 and a JSON summary with the disk id and bytes sent."""
    monkeypatch.setattr(azure_disk, "AzureDiskUploader", lambda: _uploader(arm, tls))
    result = CliRunner().invoke(
        main, ["upload", str(vhd), "--to", f"azure-disk:{DISK_ID}", "--location", "westeurope"]
    )
    assert result.exit_code == ExitCode.OK, result.output
    summary = json.loads(result.output)
    assert summary["disk_id"] == DISK_ID
    assert summary["bytes_sent"] == 8 * MIB + 512


def test_ctrl_c_during_the_pages_still_revokes(arm: FakeArm, tls: TlsFiles, vhd: Path) -> None:
    """A KeyboardInterrupt while pages are written: access revoked, the interrupt goes on."""

    def interrupt(sent: int, total: int) -> None:
        raise KeyboardInterrupt

    target = parse_disk_target(
        f"azure-disk:{DISK_ID}", location="westeurope", sku="Standard_LRS", zone=None
    )
    with pytest.raises(KeyboardInterrupt):
        upload_vhd(
            vhd,
            target,
            force=False,
            uploader=_uploader(arm, tls),
            os_type="Linux",
            hyper_v_generation="V2",
            architecture="x64",
            security_type="Standard",
            on_progress=interrupt,
        )
    assert arm.requests_to("POST", "/endGetAccess$")
    assert arm.sigs == {}


def test_progress_line_shows_bytes_rate_and_eta() -> None:
    """Half of 8 MiB in 2 s: 4.0/8.0 MiB, 2.0 MiB/s, ETA 2 s; the last line ends it."""
    lines: list[str] = []
    ticks = iter([0.0, 2.0, 4.0])
    progress = ProgressLine(lines.append, clock=lambda: next(ticks))
    progress(4 * MIB, 8 * MIB)
    progress(8 * MIB, 8 * MIB)
    assert lines == [
        "\rupload: 4.0/8.0 MiB, 2.0 MiB/s, ETA 2 s",
        "\rupload: 8.0/8.0 MiB, 2.0 MiB/s, ETA 0 s\n",
    ]
