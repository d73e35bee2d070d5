"""generalize also does what virt-sysprep does by default and waagent does not (issue 10).

A real Debian 12 target gets the leftovers those operations remove (a prepare hook writes
them before boot), is generalized, and is read from outside: each leftover is gone and
the run's verify phase passed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli_run import CliResult, imageprep, key_args
from tests.targets.guestpath import guest_ids, guest_path
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import TargetImage

pytestmark = pytest.mark.integration

USER = "azureuser"
# guest path -> owner; each one is something virt-sysprep's default operations remove.
LEFTOVERS = {
    "/root/anaconda-ks.cfg": "root",  # kickstart files hold password hashes
    "/root/original-ks.cfg": "root",
    "/root/initial-setup-ks.cfg": "root",
    "/var/crash/vmcore-2026-11-30": "root",  # crash dumps
    "/var/lib/systemd/coredump/core.sshd.0.1.1.zst": "root",
    "/var/spool/abrt/ccpp-2026-11-30-10:00:00-4242/coredump": "root",
    f"/var/spool/cron/crontabs/{USER}": USER,  # the deprovisioned user's cron spool
    "/home/builder/.ssh/authorized_keys": "builder",  # every user's ~/.ssh
    "/home/builder/.ssh/id_ed25519": "builder",
    "/root/.ssh/id_ed25519": "root",
    "/root/.ssh/known_hosts": "root",
    "/etc/machine-info": "root",
    "/var/lib/NetworkManager/secret_key": "root",  # not virt-sysprep's: stable IPv6 addresses
    "/var/lib/wicked/lease-eth0-dhcp-ipv4.xml": "root",  # wicked's state
    "/var/lib/wicked/duid.xml": "root",
    "/etc/krb5.keytab": "root",  # Kerberos host keytab and SSSD caches
    "/var/lib/sss/db/cache_example.com.ldb": "root",
    "/var/lib/sss/mc/passwd": "root",
}
# logind's linger flag for the deprovisioned user (not a virt-sysprep operation). Written
# once the target is up: logind reads it at start, and a user manager failing to start in
# the container would leave the target degraded.
LINGER_FLAG = f"/var/lib/systemd/linger/{USER}"
# Present whenever userdel ran: its backups keep the deleted user's password hash.
SHADOW_BACKUPS = ("/etc/passwd-", "/etc/shadow-", "/etc/group-", "/etc/gshadow-")


def leftovers(root: Path) -> None:
    """Write every leftover, owned as a real system would own it."""
    for path, owner in LEFTOVERS.items():
        dest = guest_path(root, path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(f"leftover {path}\n")
        uid, gid = guest_ids(root, owner)
        os.chown(dest, uid, gid)
        if "/.ssh" in path:
            os.chown(dest.parent, uid, gid)
            dest.parent.chmod(0o700)


Generalized = tuple[NspawnTarget, CliResult]


@pytest.fixture(scope="module")
def generalized(
    target_image: TargetImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Generalized]:
    """One generalize run on a target carrying every leftover."""
    work = tmp_path_factory.mktemp("sysprep")
    with NspawnTarget(target_image, prepare=leftovers) as target:
        subprocess.run(
            target.ssh_command("sudo", "install", "-D", "-m", "0644", "/dev/null", LINGER_FLAG),
            check=True,
        )
        result = imageprep(
            "run",
            *key_args(target),
            "--backup",
            f"archive:{work / 'backup'}",
            run_dir=work / "run",
        )
        target.wait_stopped(60)
        yield target, result


def test_run_succeeds_and_verifies(generalized: Generalized) -> None:
    """The run succeeds and every verify step passed."""
    _, result = generalized
    failed = [s for s in result.report["steps"] if s["status"] not in ("ok", "skipped")]
    assert result.exit_code == 0, failed


@pytest.mark.parametrize("path", sorted([*LEFTOVERS, LINGER_FLAG]))
def test_leftover_removed(generalized: Generalized, path: str) -> None:
    """The leftover is not in the image."""
    target, _ = generalized
    assert not target.guest_path(path).exists()


def test_ssh_dirs_gone(generalized: Generalized) -> None:
    """No ~/.ssh directory is left, root's included."""
    target, _ = generalized
    assert not target.guest_path("/root/.ssh").exists()
    assert not list(target.guest_path("/home").glob("*/.ssh"))


def test_shadow_backups_gone(generalized: Generalized) -> None:
    """passwd-, shadow-, group- and gshadow- are gone (userdel rewrote them last)."""
    target, _ = generalized
    assert [p for p in SHADOW_BACKUPS if target.guest_path(p).exists()] == []


def test_verify_reports_each_fact(generalized: Generalized) -> None:
    """The verify phase has a step for each of these operations, and each passed."""
    _, result = generalized
    names = {v["name"]: v["status"] for v in result.report["verification"]}
    for name in (
        "shadow-backups-absent",
        "kickstart-files-absent",
        "crash-dumps-absent",
        "user-spools-absent",
        "ssh-user-dirs-absent",
        "machine-info-absent",
        "kerberos-sssd-absent",
        "networkmanager-secret-key-absent",
    ):
        assert names.get(name) == "ok", (name, names.get(name))
