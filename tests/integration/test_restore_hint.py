"""The archive restore hint, pasted into bash, puts a real target's files back."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.backups import BackupContext
from agent.backups.archive import ArchiveProvider
from agent.targets import Target

pytestmark = pytest.mark.integration


def test_pasted_restore_hint_restores_the_archived_file(target: Any, tmp_path: Path) -> None:
    """Back up /etc/hostname, change it, paste the hint: the old content is back."""
    from agent.executors.ssh import SshExecutor, SshOptions

    ssh_target = Target(scheme="ssh", user=target.user, host=target.host, port=target.port)
    context = BackupContext(
        run_id="it-hint", target=ssh_target, paths=("/etc/hostname",), run_dir=tmp_path
    )
    options = SshOptions(identity=target.key_path, known_hosts=target.known_hosts_path)
    with SshExecutor(ssh_target, options) as executor:
        record = ArchiveProvider(tmp_path / "backups").take(executor, context)
    hostname = target.guest_path("/etc/hostname")
    original = hostname.read_text()
    hostname.write_text("changed-after-backup\n")

    # The hint is what a user pastes; only the login details their ssh_config would hold
    # (key, known_hosts) are added, by an `ssh` first on PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real_ssh = shutil.which("ssh")
    assert real_ssh is not None
    extra = [
        "-F", "none", "-i", str(target.key_path), "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={target.known_hosts_path}",
        "-o", "StrictHostKeyChecking=yes",
    ]  # fmt: skip
    (bin_dir / "ssh").write_text(f'#!/bin/sh\nexec {shlex.join([real_ssh, *extra])} "$@"\n')
    (bin_dir / "ssh").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", record.restore_hint], env=env, check=True, timeout=60)
    assert hostname.read_text() == original
