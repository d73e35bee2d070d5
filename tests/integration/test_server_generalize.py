"""generalize on a server: rsyslog (with syslog.socket), auditd and NetworkManager running.

The image is tests/targets/variants.py's server variant (Debian 12). auditd runs in the
container without nspawn's seccomp filter and with `local_events = no` (no QEMU VM): it
then writes its own start and stop records to /var/log/audit/audit.log, which is enough
to show a log written after truncation. Its unit carries RHEL's RefuseManualStop=yes
(a drop-in), so `systemctl stop auditd` is refused as on RHEL.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli_run import CliResult, imageprep, key_args
from tests.targets.guestpath import guest_path
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import TargetImage, ensure_image
from tests.targets.variants import server_spec

pytestmark = pytest.mark.integration

Generalized = tuple[NspawnTarget, CliResult]


@pytest.fixture(scope="module")
def server_image(target_image: TargetImage) -> TargetImage:
    """The server variant (built once and cached; target_image checks targets can run)."""
    return ensure_image(server_spec(target_image.spec.suite))


def _nm_lease(root: Path) -> None:
    """A lease of NetworkManager's internal DHCP client, as a managed NIC leaves one."""
    lease = guest_path(root, "/var/lib/NetworkManager/internal-3f1c-eth0.lease")
    lease.write_text("# This is private data. Do not parse.\nADDRESS=10.0.0.4\n")


@pytest.fixture(scope="module")
def generalized(
    server_image: TargetImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Generalized]:
    """One generalize run on a booted server target, shared by the assertions below."""
    work = tmp_path_factory.mktemp("server")
    with NspawnTarget(server_image, prepare=_nm_lease) as target:
        running = target.ssh_command(
            "systemctl", "is-active", "rsyslog", "auditd", "NetworkManager"
        )
        states = subprocess.run(running, capture_output=True, text=True, check=False).stdout
        assert states.split() == ["active"] * 3, states
        result = imageprep(
            "run",
            *key_args(target),
            "--backup",
            f"archive:{work / 'backup'}",
            run_dir=work / "run",
        )
        target.wait_stopped(60)
        yield target, result


def test_generalize_succeeds_with_every_verification(generalized: Generalized) -> None:
    """The run succeeds and every verify step passed, logs-empty included."""
    _, result = generalized
    failed = [s for s in result.report["steps"] if s["status"] not in ("ok", "skipped")]
    assert result.exit_code == 0, failed
    assert all(v["status"] in ("ok", "skipped") for v in result.report["verification"])


def test_logs_written_by_the_writers_are_empty(generalized: Generalized) -> None:
    """rsyslog's, auditd's and userdel's logs are empty in the image."""
    target, _ = generalized
    for log in ("/var/log/syslog", "/var/log/auth.log", "/var/log/audit/audit.log"):
        path = target.guest_path(log)
        assert not path.exists() or path.stat().st_size == 0, (log, path.read_text()[-500:])


def test_network_manager_leases_gone(generalized: Generalized) -> None:
    """NetworkManager's DHCP leases are not in the image."""
    target, _ = generalized
    assert not list(target.guest_path("/var/lib/NetworkManager").glob("*.lease"))
