"""imageprep upload run again: resume, already uploaded, refusals and --replace (fake ARM).

The real azure-mgmt-compute and azure-storage-blob clients talk to tests/arm_fake. An
upload "killed mid-way" is a real child process killed with SIGKILL while the fake holds
its Put Page requests: nothing revokes, as when a controller dies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from click.testing import CliRunner

from agent.cli import main
from agent.disks.image import MIB, sha256_of
from agent.errors import DiskError
from agent.outcome import ExitCode
from agent.platforms import azure_disk
from agent.platforms.azure_disk import AzureDiskUploader
from agent.provenance import TAG_UPLOAD, TAG_UPLOAD_SHA256
from agent.upload import parse_disk_target, upload_vhd
from agent.upload_progress import ProgressRecord, UploadIdentity, load_done, progress_path
from tests.arm_fake import FakeArm, FakeTokenCredential
from tests.arm_fake.server import Fault
from tests.arm_fake.vhds import fixed_vhd, record_passed
from tests.winrm_server.certs import TlsFiles, make_tls_files

SUB = "00000000-0000-4000-8000-00000000abcd"
DISK_ID = f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/disks/gold-os"
KEY = DISK_ID.lower()
REPO = Path(__file__).resolve().parents[2]
RANGES = 16  # 64 MiB of 4 MiB ranges, every one holding data
HELD_AFTER = 6  # Put Page requests the fake accepts before it holds the rest

CHILD = """
import sys
from pathlib import Path
from agent.platforms.azure_disk import AzureDiskUploader
from agent.upload import parse_disk_target, upload_vhd
from tests.arm_fake import FakeTokenCredential

endpoint, ca, vhd, disk = sys.argv[1:5]
uploader = AzureDiskUploader(
    credential=FakeTokenCredential(), endpoint=endpoint, connection_verify=ca,
    polling_interval=0.01, record_every=2, record_interval=3600,
)
target = parse_disk_target(f"azure-disk:{disk}", location="westeurope", sku="Standard_LRS",
                           zone=None)
upload_vhd(Path(vhd), target, force=False, uploader=uploader, os_type="Linux",
           hyper_v_generation="V2", architecture="x64", security_type="Standard")
"""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1, made by the test."""
    return make_tls_files(tmp_path_factory.mktemp("arm-tls"))


def _serve(tls: TlsFiles, *, regrant: bool) -> Iterator[FakeArm]:
    fake = FakeArm(SUB, in_progress_polls=1, regrant_active_upload=regrant)
    fake.resource_groups.add("images-rg")
    with fake.serving(tls):
        yield fake


@pytest.fixture
def arm(tls: TlsFiles) -> Iterator[FakeArm]:
    """The fake of ARM, granting write access again to an ActiveUpload disk (documented 2019)."""
    yield from _serve(tls, regrant=True)


@pytest.fixture
def strict_arm(tls: TlsFiles) -> Iterator[FakeArm]:
    """The fake of ARM refusing write access to a disk already in ActiveUpload (409)."""
    yield from _serve(tls, regrant=False)


def _make_vhd(path: Path, seed: bytes) -> Path:
    """A 64 MiB fixed VHD whose 16 ranges all hold data, with a passed boot-test record."""
    fixed_vhd(path, RANGES * 4 * MIB)
    fd = os.open(path, os.O_WRONLY)
    for index in range(RANGES):
        os.pwrite(fd, seed + os.urandom(4096), index * 4 * MIB + 8192)
    os.close(fd)
    record_passed(path, RANGES * 4 * MIB, path.with_suffix(".raw"))
    return path


@pytest.fixture
def vhd(tmp_path: Path) -> Path:
    """The VHD to upload."""
    return _make_vhd(tmp_path / "gold.vhd", b"first")


def _uploader(arm: FakeArm, tls: TlsFiles) -> AzureDiskUploader:
    return AzureDiskUploader(
        credential=FakeTokenCredential(),
        endpoint=arm.endpoint,
        connection_verify=str(tls.ca_cert),
        polling_interval=0.01,
    )


def _upload(arm: FakeArm, tls: TlsFiles, vhd: Path, **options: object) -> dict[str, object]:
    target = parse_disk_target(
        f"azure-disk:{DISK_ID}", location="westeurope", sku="Standard_LRS", zone=None
    )
    return upload_vhd(
        vhd,
        target,
        force=False,
        uploader=_uploader(arm, tls),
        os_type="Linux",
        hyper_v_generation="V2",
        architecture="x64",
        security_type="Standard",
        **options,  # type: ignore[arg-type]
    )


def _cli(
    arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(azure_disk, "AzureDiskUploader", lambda: _uploader(arm, tls))
    result = CliRunner().invoke(
        main,
        ["upload", str(vhd), "--to", f"azure-disk:{DISK_ID}", "--location", "westeurope", *extra],
    )
    return result.exit_code, result.stdout, result.stderr


def _kill_mid_upload(arm: FakeArm, tls: TlsFiles, vhd: Path) -> frozenset[int]:
    """Upload in a child process, SIGKILL it once 6 ranges are recorded; their offsets."""
    arm.hold_pages_after = HELD_AFTER
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, arm.endpoint, str(tls.ca_cert), str(vhd), DISK_ID],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    record = progress_path(vhd)
    deadline = time.monotonic() + 60
    done: list[list[int]] = []
    while len(done) < HELD_AFTER:
        assert child.poll() is None, child.communicate()[0].decode()
        assert time.monotonic() < deadline, "the child recorded no ranges in 60 s"
        time.sleep(0.05)
        try:
            done = json.loads(record.read_text())["done"]
        except (OSError, ValueError):
            done = []
    child.send_signal(signal.SIGKILL)
    child.communicate()
    arm.hold_pages_after = None
    arm.pages_released.set()  # the held requests' client is gone
    assert arm.disks[KEY]["properties"]["diskState"] == "ActiveUpload"  # nobody revoked
    return frozenset(offset for offset, _ in done)


def _disk_bytes(arm: FakeArm, size: int) -> bytes:
    content = bytearray(size)
    for offset, data in arm.pages[KEY].items():
        content[offset : offset + len(data)] = data
    return bytes(content)


def _data_offsets(vhd: Path) -> frozenset[int]:
    return frozenset(range(0, RANGES * 4 * MIB, 4 * MIB)) | {vhd.stat().st_size - 512}


def test_a_killed_upload_resumes_with_only_the_unrecorded_ranges(
    arm: FakeArm, tls: TlsFiles, vhd: Path
) -> None:
    """SIGKILL mid-upload, then a re-run: Put Page only for ranges the record lacks; bytes equal."""
    recorded = _kill_mid_upload(arm, tls, vhd)
    before = len(arm.page_requests)
    summary = _upload(arm, tls, vhd)
    resent = {offset for _, offset, _ in arm.page_requests[before:]}
    assert resent == _data_offsets(vhd) - recorded
    assert summary["resumed"] is True
    assert summary["ranges_already_written"] == len(recorded) == HELD_AFTER
    assert summary["bytes_already_written"] == HELD_AFTER * 4 * MIB
    assert summary["bytes_sent"] == (RANGES - HELD_AFTER) * 4 * MIB + 512
    assert _disk_bytes(arm, vhd.stat().st_size) == vhd.read_bytes()
    assert arm.disks[KEY]["properties"]["diskState"] == "Unattached"


def test_a_resumed_upload_is_tagged_complete_and_drops_its_record(
    arm: FakeArm, tls: TlsFiles, vhd: Path
) -> None:
    """Created tagged incomplete + the VHD's sha256; complete after the resumed run."""
    _kill_mid_upload(arm, tls, vhd)
    sha = sha256_of(vhd)
    assert arm.disks[KEY]["tags"] == {TAG_UPLOAD: "incomplete", TAG_UPLOAD_SHA256: sha}
    _upload(arm, tls, vhd)
    assert arm.disks[KEY]["tags"] == {TAG_UPLOAD: "complete", TAG_UPLOAD_SHA256: sha}
    assert not progress_path(vhd).exists()


def test_without_a_record_a_resume_sends_every_data_range(
    arm: FakeArm, tls: TlsFiles, vhd: Path
) -> None:
    """The record lost: the ActiveUpload disk is written again in full, nothing assumed."""
    _kill_mid_upload(arm, tls, vhd)
    progress_path(vhd).unlink()
    before = len(arm.page_requests)
    summary = _upload(arm, tls, vhd)
    assert {offset for _, offset, _ in arm.page_requests[before:]} == _data_offsets(vhd)
    assert (summary["resumed"], summary["bytes_already_written"]) == (True, 0)


def test_the_progress_record_never_holds_the_sas(arm: FakeArm, tls: TlsFiles, vhd: Path) -> None:
    """OUT.vhd.upload.json after a kill: no SAS signature, no blob URL in it."""
    _kill_mid_upload(arm, tls, vhd)
    text = progress_path(vhd).read_text()
    sig = arm.sigs[KEY]  # the live SAS's signature: the child never revoked
    assert sig not in text
    assert "/blobs/" not in text
    assert "sig=" not in text


def test_a_refused_second_grant_is_exit_12_naming_replace(
    strict_arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ARM answering 409 to write access on ActiveUpload: one line, exit 12, --replace."""
    _kill_mid_upload(strict_arm, tls, vhd)
    code, out, err = _cli(strict_arm, tls, vhd, monkeypatch)
    assert code == ExitCode.PLATFORM_FAILED
    assert out == ""
    (line,) = err.splitlines()
    assert "refused write access again" in line
    assert "409" in line
    assert DISK_ID in line
    assert "--replace" in line


def _interrupted(arm: FakeArm, tls: TlsFiles, vhd: Path) -> None:
    """An upload stopped by Ctrl-C after its first range: revoked, left partly written."""

    def interrupt(sent: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _upload(arm, tls, vhd, on_progress=interrupt)
    assert arm.disks[KEY]["properties"]["diskState"] == "Unattached"


def test_after_ctrl_c_a_rerun_is_exit_12_naming_replace(
    arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revoked partial upload cannot be written again: exit 12, one line, --replace."""
    _interrupted(arm, tls, vhd)
    before = len(arm.page_requests)
    code, _out, err = _cli(arm, tls, vhd, monkeypatch)
    assert code == ExitCode.PLATFORM_FAILED
    (line,) = err.splitlines()
    assert DISK_ID in line
    assert "--replace" in line
    assert "revoke" in line
    assert len(arm.page_requests) == before
    assert not arm.requests_to("POST", "/beginGetAccess$")[1:]  # no second grant asked


def test_replace_after_ctrl_c_deletes_and_uploads_afresh(
    arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--replace: the partial disk is deleted (LRO followed), a new one gets every range."""
    _interrupted(arm, tls, vhd)
    old = arm.disks[KEY]["properties"]["uniqueId"]
    code, out, err = _cli(arm, tls, vhd, monkeypatch, "--replace")
    assert code == ExitCode.OK, err
    summary = json.loads(out)
    assert (summary["replaced"], summary["resumed"]) == (True, False)
    assert summary["bytes_sent"] == RANGES * 4 * MIB + 512
    assert arm.requests_to("DELETE", "/disks/gold-os$")
    assert arm.disks[KEY]["properties"]["uniqueId"] != old
    assert arm.disks[KEY]["tags"][TAG_UPLOAD] == "complete"


def test_a_run_that_could_not_tag_is_finished_by_the_next(
    arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tagging complete refused after a full upload: exit 12; the re-run only tags (exit 0)."""
    arm.faults.append(Fault("PATCH", "/disks/gold-os$", 403))
    code, _out, err = _cli(arm, tls, vhd, monkeypatch)
    assert code == ExitCode.PLATFORM_FAILED, err
    assert arm.disks[KEY]["tags"][TAG_UPLOAD] == "incomplete"
    pages = len(arm.page_requests)
    code, out, err = _cli(arm, tls, vhd, monkeypatch)
    assert code == ExitCode.OK, err
    assert json.loads(out)["already_uploaded"] is True
    assert len(arm.page_requests) == pages
    assert arm.disks[KEY]["tags"][TAG_UPLOAD] == "complete"


def test_a_complete_upload_run_again_sends_nothing(
    arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same command after success: exit 0, already uploaded, no grant, no page."""
    _upload(arm, tls, vhd)
    grants, pages = len(arm.requests_to("POST", "/beginGetAccess$")), len(arm.page_requests)
    code, out, err = _cli(arm, tls, vhd, monkeypatch)
    assert code == ExitCode.OK, err
    summary = json.loads(out)
    assert (summary["already_uploaded"], summary["bytes_sent"]) == (True, 0)
    assert len(arm.requests_to("POST", "/beginGetAccess$")) == grants
    assert len(arm.page_requests) == pages


def test_a_disk_holding_another_vhd_is_exit_2(
    arm: FakeArm, tls: TlsFiles, vhd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk uploaded from a different VHD: exit 2 naming the disk and the sha256 tag."""
    _upload(arm, tls, _make_vhd(tmp_path / "other.vhd", b"other"))
    code, _out, err = _cli(arm, tls, vhd, monkeypatch)
    assert code == ExitCode.USAGE
    (line,) = err.splitlines()
    assert DISK_ID in line
    assert TAG_UPLOAD_SHA256 in line
    assert "--replace" in line


def test_a_disk_made_with_another_os_type_is_exit_2(
    arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same VHD, but --os-type differs from the disk's: exit 2 naming osType, nothing sent."""
    _upload(arm, tls, vhd)
    pages = len(arm.page_requests)
    code, _out, err = _cli(arm, tls, vhd, monkeypatch, "--os-type", "Windows")
    assert code == ExitCode.USAGE
    (line,) = err.splitlines()
    assert "osType Linux, not Windows" in line
    assert DISK_ID in line
    assert len(arm.page_requests) == pages


def test_a_disk_imageprep_did_not_make_is_exit_2(
    arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untagged disk of that name: exit 2 naming the disk and the missing tag, untouched."""
    arm.add_disk("images-rg", "gold-os", location="westeurope", size_gb=1)
    arm.disks[KEY]["properties"]["diskState"] = "Unattached"
    code, _out, err = _cli(arm, tls, vhd, monkeypatch)
    assert code == ExitCode.USAGE
    assert DISK_ID in err
    assert TAG_UPLOAD in err
    assert not arm.requests_to("DELETE", "/disks/")
    assert not arm.requests_to("POST", "")


def test_replace_refuses_a_disk_attached_to_a_vm(
    arm: FakeArm, tls: TlsFiles, vhd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--replace on an Attached disk: exit 2, nothing deleted."""
    arm.add_disk("images-rg", "gold-os", location="westeurope", size_gb=1)
    code, _out, err = _cli(arm, tls, vhd, monkeypatch, "--replace")
    assert code == ExitCode.USAGE
    (line,) = err.splitlines()
    assert DISK_ID in line
    assert "Attached" in line
    assert not arm.requests_to("DELETE", "/disks/")
    assert KEY in arm.disks


def test_the_fake_refuses_to_delete_an_attached_disk(arm: FakeArm, tls: TlsFiles) -> None:
    """The fake answers DELETE of an Attached disk with 409, so the tool's own check is not
    the only guard the tests have."""
    arm.add_disk("images-rg", "gold-os", location="westeurope", size_gb=1)
    client = ComputeManagementClient(
        FakeTokenCredential(),
        SUB,
        base_url=arm.endpoint,
        connection_verify=str(tls.ca_cert),
        polling_interval=0.01,
    )
    with pytest.raises(HttpResponseError) as caught:
        client.disks.begin_delete("images-rg", "gold-os").result()
    assert caught.value.status_code == 409
    assert KEY in arm.disks


def test_the_record_is_written_in_batches(tmp_path: Path) -> None:
    """Marks reach the file every N ranges (or interval), not on each one."""
    path = tmp_path / "x.vhd.upload.json"
    identity = UploadIdentity(DISK_ID, "u-1", "ab" * 32, 24 * MIB + 512)
    record = ProgressRecord(path, identity, every=3, interval=3600, clock=lambda: 0.0)
    record.flush()
    record.mark(0, 4 * MIB)
    record.mark(4 * MIB, 4 * MIB)
    assert load_done(path, identity) == frozenset()
    record.mark(8 * MIB, 4 * MIB)
    assert load_done(path, identity) == {(0, 4 * MIB), (4 * MIB, 4 * MIB), (8 * MIB, 4 * MIB)}


def test_a_record_of_another_disk_instance_is_ignored(tmp_path: Path) -> None:
    """Same disk id, new uniqueId (deleted and made again): the record counts for nothing."""
    path = tmp_path / "x.vhd.upload.json"
    identity = UploadIdentity(DISK_ID, "u-1", "ab" * 32, 24 * MIB + 512)
    record = ProgressRecord(path, identity)
    record.mark(0, 4 * MIB)
    record.flush()
    again = UploadIdentity(DISK_ID, "u-2", "ab" * 32, 24 * MIB + 512)
    assert load_done(path, identity) == {(0, 4 * MIB)}
    assert load_done(path, again) == frozenset()


def test_an_unwritable_record_is_a_one_line_disk_error(tmp_path: Path) -> None:
    """The record's folder is not writable (here: not a folder): DiskError naming the file."""
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "x.vhd.upload.json"
    record = ProgressRecord(path, UploadIdentity(DISK_ID, "u-1", "ab" * 32, 24 * MIB + 512))
    with pytest.raises(DiskError, match=r"x\.vhd\.upload\.json: cannot write the upload record"):
        record.flush()
