"""Bad input and failures against real targets: one clear line, its exit code, a report."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.cli_run import IMAGEPREP, imageprep, key_args, write_probe
from tests.integration.conftest import TargetFactory

pytestmark = pytest.mark.integration

CONNECTION_FAILED = 4
PREFLIGHT_FAILED = 3
FAILED_BEFORE_POINT_OF_NO_RETURN = 5
INTERRUPTED = 130


def builder_args(target_host: str, port: int, known_hosts: Path) -> list[str]:
    return [
        "--target",
        f"ssh://builder@{target_host}:{port}",
        "--known-hosts",
        str(known_hosts),
        "--password-env",
        "TEST_LOGIN_PASSWORD",
        "--sudo-password-env",
        "TEST_SUDO_PASSWORD",
    ]


def test_missing_waagent_fails_preflight_and_changes_nothing(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """Without waagent the run stops in preflight with exit 3; the VM is untouched."""

    def remove_waagent(root: Path) -> None:
        (root / "usr/sbin/waagent").unlink()

    target = target_factory(prepare=remove_waagent)
    machine_id = target.guest_path("/etc/machine-id").read_text()
    result = imageprep(
        "run", *key_args(target), "--backup", f"archive:{tmp_path / 'b'}", run_dir=tmp_path / "r"
    )
    assert result.exit_code == PREFLIGHT_FAILED, result.stderr[-2000:]
    assert "preflight/waagent-present" in result.report["message"]
    assert target.guest_path("/etc/machine-id").read_text() == machine_id
    assert list(target.guest_path("/etc/ssh").glob("ssh_host_*"))
    assert target.guest_path(f"/home/{target.user}").is_dir()
    assert result.report["point_of_no_return_reached"] is False


def test_wrong_password_is_exit_4(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A refused password is one line naming the user and host, exit 4, and a report."""
    target = target_factory()
    env = {"TEST_LOGIN_PASSWORD": "not-the-password", "TEST_SUDO_PASSWORD": "x"}
    result = imageprep(
        "check",
        *builder_args(target.host, target.port, target.known_hosts_path),
        run_dir=tmp_path / "r",
        env=env,
    )
    assert result.exit_code == CONNECTION_FAILED
    assert "builder@" in result.report["message"]
    assert "Traceback" not in result.stderr


def test_wrong_sudo_password_is_exit_4(target_factory: TargetFactory, tmp_path: Path) -> None:
    """Login works but sudo refuses the password: exit 4, naming sudo."""
    target = target_factory()
    env = {"TEST_LOGIN_PASSWORD": target.builder_password, "TEST_SUDO_PASSWORD": "wrong-sudo"}
    result = imageprep(
        "check",
        *builder_args(target.host, target.port, target.known_hosts_path),
        run_dir=tmp_path / "r",
        env=env,
    )
    assert result.exit_code == CONNECTION_FAILED
    assert "sudo" in result.report["message"]


def test_passwords_never_reach_report_or_log(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A password-authenticated run leaves no trace of the password in any encoding."""
    target = target_factory()
    password = target.builder_password
    env = {"TEST_LOGIN_PASSWORD": password, "TEST_SUDO_PASSWORD": password}
    result = imageprep(
        "check",
        *builder_args(target.host, target.port, target.known_hosts_path),
        run_dir=tmp_path / "r",
        env=env,
    )
    assert result.exit_code == 0, result.stderr[-2000:]
    everything = result.stdout + result.stderr + result.log_text + str(result.report)
    assert password not in everything
    assert base64.b64encode(password.encode()).decode() not in everything
    assert base64.b64encode(password.encode("utf-16-le")).decode() not in everything


def test_changed_host_key_is_refused(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A host key that differs from known_hosts is refused, even with accept-new."""

    def new_host_keys(root: Path) -> None:
        for old in (root / "etc/ssh").glob("ssh_host_*"):
            old.unlink()
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                str(root / "etc/ssh/ssh_host_ed25519_key"),
            ],
            check=True,
        )

    target = target_factory(prepare=new_host_keys)
    result = imageprep(
        "check", *key_args(target), "--host-key-policy", "accept-new", run_dir=tmp_path / "r"
    )
    assert result.exit_code == CONNECTION_FAILED
    assert "host key" in result.report["message"].lower()


def test_unreachable_port_is_exit_4(target_factory: TargetFactory, tmp_path: Path) -> None:
    """Nothing listening on the port: exit 4 naming the host, and a report."""
    target = target_factory()
    args = key_args(target)
    args[1] = f"ssh://{target.user}@{target.host}:2"
    result = imageprep("check", *args, run_dir=tmp_path / "r")
    assert result.exit_code == CONNECTION_FAILED
    assert target.host in result.report["message"]


def test_step_timeout_kills_the_command(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A step past its timeout is reported timed out and its process is gone on the target."""
    target = target_factory()
    probe = write_probe(
        tmp_path,
        """\
        - name: slow
          description: Sleep longer than the timeout allows
          timeout: 2
          run: sleep 4242
        """,
    )
    result = imageprep("run", *key_args(target), *probe, run_dir=tmp_path / "r")
    assert result.exit_code == FAILED_BEFORE_POINT_OF_NO_RETURN
    assert result.step("work/slow")["status"] == "timed_out"
    leftover = subprocess.run(["pgrep", "-f", "sleep 4242"], capture_output=True, check=False)
    assert leftover.stdout == b""


def test_non_zero_step_names_step_and_stderr(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A failing step is reported with its exit code and its last stderr line."""
    target = target_factory()
    probe = write_probe(
        tmp_path,
        """\
        - name: broken
          description: Fail the way a real command does
          run: echo "cannot open /etc/frobnicate.conf" >&2; exit 3
        """,
    )
    result = imageprep("run", *key_args(target), *probe, run_dir=tmp_path / "r")
    assert result.exit_code == FAILED_BEFORE_POINT_OF_NO_RETURN
    assert "work/broken" in result.report["message"]
    assert "cannot open /etc/frobnicate.conf" in result.report["message"]
    assert result.step("work/broken")["exit_code"] == 3


def test_four_mib_of_output_does_not_stall(target_factory: TargetFactory, tmp_path: Path) -> None:
    """A step printing 4 MiB on stdout and on stderr completes; the report keeps tails."""
    target = target_factory()
    probe = write_probe(
        tmp_path,
        """\
        - name: chatty
          description: Print 4 MiB on each stream
          run: |
            yes stdout-line | head -c 4194304
            yes stderr-line | head -c 4194304 >&2
        """,
    )
    result = imageprep("run", *key_args(target), *probe, run_dir=tmp_path / "r")
    assert result.exit_code == 0, result.stderr[-2000:]
    assert "stdout-line" in result.step("work/chatty")["stdout_tail"]


def test_interrupt_writes_report_and_exits_130(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """SIGINT during a step ends the run with exit 130 and an 'interrupted' result.json."""
    target = target_factory()
    probe = write_probe(
        tmp_path,
        """\
        - name: long
          description: Run long enough to be interrupted
          timeout: 120
          run: sleep 4343
        """,
    )
    run_dir = tmp_path / "r"
    process = subprocess.Popen(
        [
            IMAGEPREP,
            "run",
            *key_args(target),
            *probe,
            "--run-dir",
            str(run_dir),
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 60
    result_file = run_dir / "result.json"
    while time.monotonic() < deadline and not _step_started(run_dir, "work/long"):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == INTERRUPTED
    report = json.loads(result_file.read_text())
    assert report["status"] == "interrupted"
    assert next(s for s in report["steps"] if s["name"] == "long")["status"] == "interrupted"


def _step_started(run_dir: Path, key: str) -> bool:
    """True once the journal (appended and fsync'd as the run goes) shows the step started."""
    journal = run_dir / "journal.jsonl"
    if not journal.exists():
        return False
    events = [json.loads(line) for line in journal.read_text().splitlines() if line]
    return any(e["event"] == "step_started" and e.get("step") == key for e in events)
