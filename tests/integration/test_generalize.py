"""`imageprep run` generalizes real Debian 12 and 13 targets; the result is checked from outside."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from agent.result_schema import ResultDocument
from agent.schemas import json_schema
from tests.integration.cli_run import CliResult, imageprep, key_args
from tests.integration.conftest import TargetFactory
from tests.targets.guestpath import guest_path
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import ImageSpec, TargetImage, ensure_image
from tests.targets.variants import TRIXIE

pytestmark = pytest.mark.integration


Generalized = tuple[NspawnTarget, CliResult, dict[str, str]]

# The user's own line, kept; then the lines cloud-init's mounts module writes on Azure for
# the resource disk and its swap (cc_mounts at 22.4: fields joined by tabs, its default
# options plus the comment=cloudconfig marker), removed.
USERS_FSTAB_LINE = "tmpfs /srv/scratch tmpfs defaults,noauto 0 0\n"
CLOUD_INIT_FSTAB_LINES = (
    "/dev/disk/cloud/azure_resource-part1\t/mnt\tauto\t"
    "defaults,nofail,x-systemd.requires=cloud-init.service,_netdev,comment=cloudconfig\t0\t2\n"
    "/dev/disk/cloud/azure_resource-part2\tnone\tswap\tsw,comment=cloudconfig\t0\t0\n"
)
ESP_RANDOM_SEED = "/boot/efi/loader/random-seed"


def _root_shadow_field(target: NspawnTarget) -> str:
    shadow = target.guest_path("/etc/shadow").read_text()
    return next(line.split(":")[1] for line in shadow.splitlines() if line.startswith("root:"))


def _golden_vm_as_on_azure(root: Path) -> None:
    fstab = guest_path(root, "/etc/fstab")
    fstab.write_text(fstab.read_text() + USERS_FSTAB_LINE + CLOUD_INIT_FSTAB_LINES)
    # systemd-boot's seed on an ESP mounted at /boot/efi (Debian's place for it).
    esp_seed = guest_path(root, ESP_RANDOM_SEED)
    esp_seed.parent.mkdir(parents=True)
    esp_seed.write_bytes(os.urandom(32))


@pytest.fixture(scope="module", params=["bookworm", TRIXIE])
def generalized(
    target_image: TargetImage,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Generalized]:
    """One full generalize run per Debian base (12 and 13), shared by the assertions below."""
    image = target_image
    if request.param != target_image.spec.suite:
        image = ensure_image(ImageSpec(suite=request.param))
    work = tmp_path_factory.mktemp("generalize")
    with NspawnTarget(image, prepare=_golden_vm_as_on_azure) as target:
        # A golden VM with a root password: waagent's deprovision must lock it.
        subprocess.run(
            target.ssh_command("sudo chpasswd"),
            input=b"root:golden-vm-root-password\n",
            check=True,
        )
        before = {
            "root_shadow": _root_shadow_field(target),
            "machine_id": target.guest_path("/etc/machine-id").read_text(),
            "fstab": target.guest_path("/etc/fstab").read_text(),
        }
        result = imageprep(
            "run",
            *key_args(target),
            "--backup",
            f"archive:{work / 'backups'}",
            run_dir=work / "run",
        )
        target.wait_stopped(60)
        yield target, result, before


def test_run_exits_0_and_reports_success(generalized: Generalized) -> None:
    """The run succeeds and result.json says so."""
    _, result, _ = generalized
    assert result.exit_code == 0, result.stderr[-3000:]
    assert result.report["status"] == "succeeded"


def test_target_powered_off(generalized: Generalized) -> None:
    """The guest powered itself off (nspawn exited on its own) and the report says so."""
    target, result, _ = generalized
    assert not target.is_running()
    assert target.exit_code == 0
    assert result.report["powered_off"] is True


def test_machine_id_empty(generalized: Generalized) -> None:
    """/etc/machine-id is empty, so the first boot of a clone makes a new one."""
    target, _, before = generalized
    assert before["machine_id"].strip() != ""
    assert target.guest_path("/etc/machine-id").read_text() == ""


def test_root_password_locked_by_waagent(generalized: Generalized) -> None:
    """The golden VM's root password is not in the image: waagent locked it (preflight let it)."""
    target, result, before = generalized
    assert before["root_shadow"].startswith("$")
    assert _root_shadow_field(target) == "*LOCK*"
    assert (
        "waagent's deprovision locks it"
        in result.step("preflight/root-password-not-shared")["stdout_tail"]
    )


def test_ssh_host_keys_gone(generalized: Generalized) -> None:
    """No SSH host key is left in the image."""
    target, _, _ = generalized
    assert list(target.guest_path("/etc/ssh").glob("ssh_host_*")) == []


def test_login_user_and_home_gone(generalized: Generalized) -> None:
    """The provisioned user is deleted with its home directory."""
    target, _, _ = generalized
    passwd = target.guest_path("/etc/passwd").read_text()
    assert not any(line.startswith(f"{target.user}:") for line in passwd.splitlines())
    assert not target.guest_path(f"/home/{target.user}").exists()


def test_sudoers_line_gone(generalized: Generalized) -> None:
    """No sudoers file still grants the deleted user anything."""
    target, _, _ = generalized
    sudoers = [target.guest_path("/etc/sudoers"), *target.guest_path("/etc/sudoers.d").iterdir()]
    assert not any(target.user in path.read_text() for path in sudoers if path.is_file())


def test_cloud_init_and_waagent_state_gone(
    generalized: Generalized,
) -> None:
    """cloud-init's instance state, its seed and waagent's ovf-env.xml are gone."""
    target, _, _ = generalized
    assert not target.guest_path("/var/lib/cloud/instance").exists()
    assert not target.guest_path("/var/lib/cloud/seed").exists()
    assert not target.guest_path("/var/lib/waagent/ovf-env.xml").exists()


def test_cloud_init_fstab_lines_gone_and_the_users_kept(generalized: Generalized) -> None:
    """/etc/fstab loses exactly the lines cloud-init wrote; the rest is byte for byte kept."""
    target, _, before = generalized
    assert CLOUD_INIT_FSTAB_LINES in before["fstab"]
    fstab = target.guest_path("/etc/fstab")
    assert fstab.read_text() == before["fstab"].replace(CLOUD_INIT_FSTAB_LINES, "")
    assert USERS_FSTAB_LINE in fstab.read_text()
    assert fstab.stat().st_mode & 0o777 == 0o644


def test_random_seeds_gone(generalized: Generalized) -> None:
    """Neither the OS's saved seed nor systemd-boot's on the ESP is left for clones to share."""
    target, _, _ = generalized
    assert not target.guest_path("/var/lib/systemd/random-seed").exists()
    assert not target.guest_path(ESP_RANDOM_SEED).exists()
    assert target.guest_path(ESP_RANDOM_SEED).parent.is_dir()  # only the seed went


def test_histories_gone(generalized: Generalized) -> None:
    """root's shell history is gone (the user's went with its home)."""
    target, _, _ = generalized
    assert not target.guest_path("/root/.bash_history").exists()


def test_backup_archive_matches_report(generalized: Generalized) -> None:
    """The archive named in the report exists and has the reported sha256 and size."""
    _, result, _ = generalized
    backup = result.report["backup"]
    archive = Path(backup["reference"])
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == backup["sha256"]
    assert archive.stat().st_size == backup["size_bytes"]


def test_point_of_no_return_recorded(generalized: Generalized) -> None:
    """The report marks the point of no return and every verification passed."""
    _, result, _ = generalized
    assert result.report["point_of_no_return_reached"] is True
    assert result.report["verification"]
    assert all(v["status"] in ("ok", "skipped") for v in result.report["verification"])


def test_summary_on_stdout_is_json(generalized: Generalized) -> None:
    """With --log-format json the last stdout line is a machine-readable summary."""
    _, result, _ = generalized
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["exit_code"] == 0
    assert summary["result"].endswith("result.json")


def test_check_changes_nothing(target_factory: TargetFactory, tmp_path: Path) -> None:
    """The check playbook passes on a fresh target and leaves no change behind."""
    target = target_factory()
    machine_id = target.guest_path("/etc/machine-id").read_text()
    result = imageprep("check", *key_args(target), run_dir=tmp_path / "run")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert target.guest_path("/etc/machine-id").read_text() == machine_id
    assert list(target.guest_path("/etc/ssh").glob("ssh_host_*"))


def test_result_json_fits_its_published_schema(generalized: Generalized) -> None:
    """The generalize run's result.json validates against `imageprep schema result`, and
    the schema names every top-level field it has (backup, verification, ...)."""
    _, result, _ = generalized
    jsonschema.validate(result.report, json_schema("result"))
    assert set(result.report) <= set(ResultDocument.model_fields)
