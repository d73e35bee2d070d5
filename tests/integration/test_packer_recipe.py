"""examples/packer runs for real: Debian's packer, its null builder and SSH communicator
against a disposable target, imageprep called from the shell-local provisioner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.targets.nspawn import NspawnTarget

pytestmark = pytest.mark.integration

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "packer"
IMAGEPREP = str(Path(sys.executable).with_name("imageprep"))


@dataclass(frozen=True)
class PackerBuild:
    exit_code: int
    output: str
    run_dir: Path


def _packer() -> str:
    packer = shutil.which("packer")
    if packer is None:
        if os.environ.get("IMAGEPREP_REQUIRE_TARGETS") == "1":
            pytest.fail("packer is required here: run tests/targets/host-deps.sh", pytrace=False)
        pytest.skip("packer is not installed (apt install packer)")
    return packer


def _build(target: NspawnTarget, work: Path, known_hosts: Path) -> PackerBuild:
    run_dir = work / "run"
    completed = subprocess.run(
        [
            _packer(),
            "build",
            "-color=false",
            "-var",
            f"vm_host={target.host}",
            "-var",
            f"vm_port={target.port}",
            "-var",
            f"vm_user={target.user}",
            "-var",
            f"vm_ssh_key_file={target.key_path}",
            "-var",
            f"known_hosts={known_hosts}",
            "-var",
            f"backup=archive:{work / 'backups'}",
            "-var",
            f"run_dir={run_dir}",
            "-var",
            f"imageprep={IMAGEPREP}",
            str(RECIPE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
        env={
            **os.environ,
            # Packer asks HashiCorp's checkpoint service for updates unless told not to:
            # tests talk to nothing but their own targets.
            "CHECKPOINT_DISABLE": "1",
            "PACKER_CONFIG_DIR": str(work / "packer-config"),
            "PACKER_CACHE_DIR": str(work / "packer-cache"),
            "HOME": str(work),
        },
        check=False,
    )
    return PackerBuild(completed.returncode, completed.stdout + completed.stderr, run_dir)


def test_packer_build_generalizes_the_vm(target: NspawnTarget, tmp_path: Path) -> None:
    """`packer build` of the recipe generalizes and powers off the VM it connected to."""
    build = _build(target, tmp_path, target.known_hosts_path)
    assert build.exit_code == 0, build.output[-3000:]
    assert target.wait_stopped(60)
    assert '"status": "succeeded"' in (build.run_dir / "result.json").read_text()
    assert target.guest_path("/etc/machine-id").read_text() == ""


def test_packer_build_never_prints_the_private_key(target: NspawnTarget, tmp_path: Path) -> None:
    """The SSH private key Packer hands the provisioner appears in no build output."""
    build = _build(target, tmp_path, target.known_hosts_path)
    key_body = target.key_path.read_text().splitlines()[1]
    assert key_body not in build.output


def test_imageprep_failure_fails_the_build(target: NspawnTarget, tmp_path: Path) -> None:
    """A host key imageprep refuses (exit 4) fails `packer build`, and the VM is untouched."""
    build = _build(target, tmp_path, _foreign_known_hosts(tmp_path, target.host))
    assert build.exit_code != 0
    assert "exit status: 4" in build.output, build.output[-3000:]
    assert "host key for" in build.output
    assert target.is_running()
    assert target.guest_path("/etc/machine-id").read_text().strip() != ""


def _foreign_known_hosts(directory: Path, host: str) -> Path:
    """A known_hosts file naming HOST with a key the target does not have."""
    key = directory / "foreign"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    key_type, key_body, *_ = key.with_suffix(".pub").read_text().split()
    known_hosts = directory / "foreign_known_hosts"
    known_hosts.write_text(f"{host} {key_type} {key_body}\n")
    return known_hosts
