"""Kill `imageprep run` at chosen points against a real target, resume, compare the end state.

Each interruption point gets a fresh target. The first run is SIGKILLed, either by the
test hook (``IMAGEPREP_TEST_KILL_AFTER=EVENT[:STEP]``: right after that journal event is
on disk) or, for "inside a long step", by the test once the step's program is seen
running on the target. Then ``imageprep run --resume RUN_DIR`` finishes the run, and the
target is checked from outside against a run that was never interrupted: same final
state, and waagent's deprovisioning executed exactly once (counted on the target by a
shim that logs each call and then execs the real waagent).

Resuming after deprovisioning needs a login that still works: these targets log in as
the ``builder`` account (not the user waagent deletes) and their sshd also loads the host
keys from a copy outside /etc/ssh/ssh_host_*, as OpenSSH >= 9.8 keeps serving the keys
it loaded at start. With Debian 12's sshd and the deleted login user, a resume after
deprovisioning cannot log in at all; a test shows that it says so (exit 6 and the restore
command). The host keys go at the end of deprovision, so a run killed before the point of
no return resumes over a new connection (tested as the login user, without key copies).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_run import IMAGEPREP, key_args
from tests.integration.conftest import TargetFactory
from tests.targets.guestpath import guest_path
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import TargetImage

pytestmark = pytest.mark.integration

CALLS_DIR = "/var/lib/imageprep-test"
SLOW_FLAG = f"{CALLS_DIR}/slow"  # present: the shims sleep 3 s, so a kill lands inside
PASSWORD_ENV = "IMAGEPREP_TEST_BUILDER_PASSWORD"  # noqa: S105  the variable's name
FAILED_AFTER_POINT_OF_NO_RETURN = 6
INTERRUPTED = 130
TARGET_BUSY = 11

_SHIM = """#!/bin/sh
echo "$*" >> {calls}/{tool}-calls
case "$*" in *{slow_on}*) if [ -e {slow} ]; then sleep 3; fi ;; esac
exec {real} "$@"
"""


def _shim(root: Path, path: str, slow_on: str) -> None:
    tool = guest_path(root, path)
    real = f"{path}.real"
    tool.rename(guest_path(root, real))
    tool.write_text(
        _SHIM.format(
            calls=CALLS_DIR, tool=Path(path).name, slow_on=slow_on, slow=SLOW_FLAG, real=real
        )
    )
    tool.chmod(0o755)


def counting_shims(root: Path, *, slow: bool = False) -> None:
    """waagent and cloud-init log every call; with ``slow``, deprovision/clean take 3 s."""
    guest_path(root, CALLS_DIR).mkdir(parents=True, exist_ok=True)
    _shim(root, "/usr/sbin/waagent", "deprovision")
    _shim(root, "/usr/bin/cloud-init", "clean")
    if slow:
        guest_path(root, SLOW_FLAG).touch()


def resumable(root: Path, *, slow: bool = False) -> None:
    """Shims, and host keys sshd keeps serving after cleanup deletes /etc/ssh/ssh_host_*."""
    counting_shims(root, slow=slow)
    ssh = guest_path(root, "/etc/ssh")
    copies = ssh / "imageprep-test-hostkeys"
    copies.mkdir()
    lines = []
    for key in sorted(ssh.glob("ssh_host_*")):
        copy = copies / key.name
        copy.write_bytes(key.read_bytes())
        copy.chmod(key.stat().st_mode & 0o777)
        if not key.name.endswith(".pub"):
            lines.append(f"HostKey /etc/ssh/imageprep-test-hostkeys/{key.name}\n")
    (ssh / "sshd_config.d" / "imageprep-test-hostkeys.conf").write_text("".join(lines))


def login_args(target: NspawnTarget) -> list[str]:
    return [
        "--password-env",
        PASSWORD_ENV,
        "--sudo-password-env",
        PASSWORD_ENV,
        "--known-hosts",
        str(target.known_hosts_path),
    ]


def builder_run(target: NspawnTarget, work: Path) -> list[str]:
    return [
        IMAGEPREP,
        "run",
        "--target",
        f"ssh://{target.builder_user}@{target.host}:{target.port}",
        *login_args(target),
        "--backup",
        f"archive:{work / 'backups'}",
        "--run-dir",
        str(work / "run"),
        "--log-format",
        "json",
    ]


def env_for(target: NspawnTarget, work: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        PASSWORD_ENV: target.builder_password,
        "XDG_STATE_HOME": str(work / "state"),
        **extra,
    }


def resume(target: NspawnTarget, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`imageprep run --resume RUN_DIR` with the login options only (--target from the journal)."""
    return subprocess.run(
        [IMAGEPREP, "run", "--resume", str(work / "run"), *args, "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env_for(target, work),
        check=False,
    )


def calls(target: NspawnTarget, tool: str, containing: str) -> int:
    path = target.guest_path(f"{CALLS_DIR}/{tool}-calls")
    text = path.read_text() if path.exists() else ""
    return sum(containing in line for line in text.splitlines())


def final_state(target: NspawnTarget) -> dict[str, Any]:
    """The target as seen from outside after the run: what generalization must leave."""
    stopped = target.wait_stopped(60)
    g = target.guest_path
    passwd = g("/etc/passwd").read_text()
    sudoers = [g("/etc/sudoers"), *g("/etc/sudoers.d").iterdir()]
    return {
        "powered_off": stopped,
        "machine_id": g("/etc/machine-id").read_text(),
        "host_keys": sorted(p.name for p in g("/etc/ssh").glob("ssh_host_*")),
        "user": any(line.startswith(f"{target.user}:") for line in passwd.splitlines()),
        "builder": any(line.startswith(f"{target.builder_user}:") for line in passwd.splitlines()),
        "home": g(f"/home/{target.user}").exists(),
        "sudoers_mention": any(target.user in p.read_text() for p in sudoers if p.is_file()),
        "ovf_env": g("/var/lib/waagent/ovf-env.xml").exists(),
        "cloud_state": sorted(p.name for p in g("/var/lib/cloud").iterdir())
        if g("/var/lib/cloud").exists()
        else [],
        "root_history": g("/root/.bash_history").exists(),
        "random_seed": g("/var/lib/systemd/random-seed").exists(),
        "waagent_deprovision_runs": calls(target, "waagent", "deprovision"),
    }


def journal_events(work: Path) -> list[dict[str, Any]]:
    lines = (work / "run" / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def uninterrupted(
    target_image: TargetImage, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The final state of the same kind of target after a run nobody interrupted."""
    work = tmp_path_factory.mktemp("uninterrupted")
    with NspawnTarget(target_image, prepare=resumable) as target:
        done = subprocess.run(
            builder_run(target, work),
            capture_output=True,
            text=True,
            timeout=300,
            env=env_for(target, work),
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return final_state(target)


# -- kill at a boundary (test hook) or inside a long step (from outside), then resume ------

BOUNDARIES = [
    pytest.param("run_started", id="before-backup"),
    pytest.param("backup_recorded", id="after-backup"),
    pytest.param("step_finished:preflight/free-space", id="mid-preflight"),
    pytest.param("step_finished:cleanup/shell-histories", id="mid-cleanup"),
    pytest.param("step_finished:deprovision/waagent-deprovision", id="after-deprovision"),
    pytest.param("step_finished:verify/user-absent", id="mid-verify"),
    pytest.param("step_started:shutdown/power-off", id="before-power-off"),
]
INSIDE = [
    pytest.param("cloud-init", "clean", id="inside-cleanup-step"),
    pytest.param("waagent", "deprovision", id="inside-deprovision"),
]


@pytest.fixture
def resumable_target(target_factory: TargetFactory) -> NspawnTarget:
    return target_factory(prepare=resumable)


def _check_resumed(target: NspawnTarget, work: Path, uninterrupted: dict[str, Any]) -> None:
    resumed = resume(target, work, *login_args(target))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert final_state(target) == uninterrupted
    assert uninterrupted["waagent_deprovision_runs"] == 1
    report = json.loads((work / "run" / "result.json").read_text())
    assert report["status"] == "succeeded"
    assert len(report["sessions"]) == 2
    events = journal_events(work)
    assert sum(e["event"] == "backup_recorded" for e in events) == 1  # never a second backup
    assert len(list((work / "backups").glob("*.tar.gz"))) == 1
    destructive_starts = [e for e in events if e["event"] == "step_started" and e["destructive"]]
    assert len(destructive_starts) <= 1


@pytest.mark.parametrize("kill_after", BOUNDARIES)
def test_killed_at_a_boundary_then_resumed_ends_like_an_uninterrupted_run(
    resumable_target: NspawnTarget, tmp_path: Path, uninterrupted: dict[str, Any], kill_after: str
) -> None:
    """SIGKILL right after a journal event, then --resume: same end state, one deprovision."""
    target = resumable_target
    first = subprocess.run(
        builder_run(target, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        env=env_for(target, tmp_path, IMAGEPREP_TEST_KILL_AFTER=kill_after),
        check=False,
    )
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert target.is_running()
    _check_resumed(target, tmp_path, uninterrupted)


@pytest.mark.parametrize(("tool", "marker"), INSIDE)
def test_killed_inside_a_long_step_then_resumed_ends_like_an_uninterrupted_run(
    target_factory: TargetFactory,
    tmp_path: Path,
    uninterrupted: dict[str, Any],
    tool: str,
    marker: str,
) -> None:
    """SIGKILL while the step's program runs on the target, then --resume."""
    target = target_factory(prepare=lambda root: resumable(root, slow=True))
    first = subprocess.Popen(
        builder_run(target, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env_for(target, tmp_path),
    )
    deadline = time.monotonic() + 120
    while calls(target, tool, marker) == 0 and first.poll() is None:
        assert time.monotonic() < deadline, f"{tool} {marker} never started"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL
    target.guest_path(SLOW_FLAG).unlink()
    _check_resumed(target, tmp_path, uninterrupted)


def test_killed_between_journaling_the_destructive_start_and_sending_it_refuses(
    resumable_target: NspawnTarget, tmp_path: Path
) -> None:
    """Its start is on disk, its command never left: the check finds nothing, so refuse.

    The resume never guesses that a destructive step did not run: exit 6, restore from
    the backup; waagent was never executed, and the resume changed nothing.
    """
    target = resumable_target
    first = subprocess.run(
        builder_run(target, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        env=env_for(
            target,
            tmp_path,
            IMAGEPREP_TEST_KILL_AFTER="step_started:deprovision/waagent-deprovision",
        ),
        check=False,
    )
    assert first.returncode == -signal.SIGKILL
    resumed = resume(target, tmp_path, *login_args(target))
    assert resumed.returncode == FAILED_AFTER_POINT_OF_NO_RETURN, resumed.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "resume_check says its effect is not in place" in report["message"]
    assert "restore the VM from the backup" in report["message"]
    assert calls(target, "waagent", "deprovision") == 0
    assert target.guest_path("/var/lib/waagent/ovf-env.xml").exists()
    assert target.is_running()


# -- where a resume cannot log in: said honestly -------------------------------------------


def _azureuser_run(target: NspawnTarget, work: Path, kill_after: str) -> None:
    first = subprocess.run(
        [
            IMAGEPREP,
            "run",
            *key_args(target),
            "--backup",
            f"archive:{work / 'backups'}",
            "--run-dir",
            str(work / "run"),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "XDG_STATE_HOME": str(work / "state"),
            "IMAGEPREP_TEST_KILL_AFTER": kill_after,
        },
        check=False,
    )
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]


def test_resume_after_deprovision_without_a_surviving_login_says_restore(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """The login user is deleted and sshd lost its keys: exit 6 and the restore command."""
    target = target_factory(prepare=counting_shims)
    _azureuser_run(target, tmp_path, "step_finished:deprovision/waagent-deprovision")
    resumed = resume(
        target,
        tmp_path,
        "--identity",
        str(target.key_path),
        "--known-hosts",
        str(target.known_hosts_path),
    )
    assert resumed.returncode == FAILED_AFTER_POINT_OF_NO_RETURN
    report = json.loads((tmp_path / "run" / "result.json").read_text())
    assert report["message"].startswith("cannot log in again to resume")
    assert "tar " in report["message"]  # the archive's restore command
    assert calls(target, "waagent", "deprovision") == 1
    assert journal_events(tmp_path)[-1]["exit_code"] == FAILED_AFTER_POINT_OF_NO_RETURN


def test_killed_at_the_end_of_cleanup_resumes_over_a_new_connection(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """Killed after cleanup, before the point of no return, a resume over a new connection
    (Debian 12 sshd, no host key copies) finishes the run: the keys go last (issue 10, 5)."""
    target = target_factory(prepare=counting_shims)
    _azureuser_run(target, tmp_path, "step_finished:deprovision/ovf-env-names-user")
    assert list(target.guest_path("/etc/ssh").glob("ssh_host_*"))
    resumed = resume(
        target,
        tmp_path,
        "--identity",
        str(target.key_path),
        "--known-hosts",
        str(target.known_hosts_path),
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert target.wait_stopped(60)
    assert list(target.guest_path("/etc/ssh").glob("ssh_host_*")) == []
    assert calls(target, "waagent", "deprovision") == 1


# -- Ctrl-C / SIGTERM and the lock, on a real run ------------------------------------------


def test_sigterm_records_the_step_as_interrupted_and_a_second_run_is_refused(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """While a run holds the target another is refused (exit 11); SIGTERM: journal + report."""
    target = target_factory(prepare=lambda root: counting_shims(root, slow=True))
    first = subprocess.Popen(
        [
            IMAGEPREP,
            "run",
            *key_args(target),
            "--backup",
            f"archive:{tmp_path / 'backups'}",
            "--run-dir",
            str(tmp_path / "run"),
            "--log-format",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
    )
    deadline = time.monotonic() + 120
    while calls(target, "cloud-init", "clean") == 0:
        assert time.monotonic() < deadline
        assert first.poll() is None
        time.sleep(0.05)
    run_id = journal_events(tmp_path)[0]["run_id"]

    second = subprocess.run(
        [IMAGEPREP, "check", *key_args(target), "--run-dir", str(tmp_path / "second")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
        check=False,
    )
    assert second.returncode == TARGET_BUSY
    assert f"is busy: run {run_id} (pid {first.pid}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "second").exists()

    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == INTERRUPTED
    events = journal_events(tmp_path)
    assert [e["event"] for e in events[-2:]] == ["step_interrupted", "run_finished"]
    assert events[-2]["step"] == "cleanup/cloud-init-clean"
    report = json.loads((tmp_path / "run" / "result.json").read_text())
    step = next(s for s in report["steps"] if s["name"] == "cloud-init-clean")
    assert step["status"] == "interrupted"
    assert report["status"] == "interrupted"
