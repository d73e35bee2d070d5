"""archive: against a real Debian target over real SSH (systemd-nspawn fixture)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

import pytest

from agent.backups import BackupContext
from agent.backups.archive import ArchiveProvider
from agent.targets import Target

pytestmark = pytest.mark.integration


def test_archive_of_a_real_target_holds_hostname_and_history(target: Any, tmp_path: Path) -> None:
    """Root-only and user-owned files come back over SSH with their content, mode and owner."""
    # Imported here: collecting this file must not need paramiko's executor to exist yet.
    from agent.executors.ssh import SshExecutor, SshOptions

    ssh_target = Target(scheme="ssh", user=target.user, host=target.host, port=target.port)
    context = BackupContext(
        run_id="it-archive",
        target=ssh_target,
        paths=("/etc/hostname", "/home/azureuser/.bash_history", "/var/lib/absent-on-debian"),
        run_dir=tmp_path,
    )
    options = SshOptions(identity=target.key_path, known_hosts=target.known_hosts_path)
    with SshExecutor(ssh_target, options) as executor:
        record = ArchiveProvider(tmp_path / "backups").take(executor, context)

    archive = Path(record.reference)
    assert record.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert record.details["missing_paths"] == "/var/lib/absent-on-debian"
    with tarfile.open(archive) as tar:
        hostname = tar.extractfile("etc/hostname")
        assert hostname is not None
        assert hostname.read().strip()
        history = tar.getmember("home/azureuser/.bash_history")
        assert history.mode == 0o600
        assert history.uid != 0  # azureuser's, by number (--numeric-owner)
        content = tar.extractfile(history)
        assert content is not None
        assert b"sudo -i" in content.read()
