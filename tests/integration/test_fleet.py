"""`imageprep run|check --inventory` against several real targets booted at once.

Each target is a disposable Debian container in its own network namespace; the inventory
names their addresses. The fleet runs as the installed CLI, as a pipeline would run it;
what it did is checked from outside (the targets' disks, run folders, fleet.json).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_run import IMAGEPREP, write_probe
from tests.targets.guestpath import guest_path
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import TargetImage
from tests.winrm_server import (
    WindowsMachine,
    WinRmTestServer,
    make_tls_files,
    ntlm_user_file_line,
)

pytestmark = pytest.mark.integration

FLEET_SIZE = 16
INTERRUPTED = 130
STARTED_FLAG = "/var/tmp/fleet-step-started"
HOLD_FLAG = "/var/tmp/fleet-step-hold"

Starter = Callable[..., list[NspawnTarget]]


@pytest.fixture
def start_targets(target_image: TargetImage) -> Iterator[Starter]:
    """Boots N targets at the same time (optionally one `prepare` per target); tears all down."""
    with ExitStack() as teardown:

        def start(
            count: int, prepare: dict[int, Callable[[Path], None]] | None = None
        ) -> list[NspawnTarget]:
            targets = [
                NspawnTarget(target_image, prepare=(prepare or {}).get(n)) for n in range(count)
            ]
            for target in targets:
                teardown.callback(target.close)
            with ThreadPoolExecutor(max_workers=count) as pool:
                list(pool.map(NspawnTarget.start, targets))
            return targets

        yield start


def _inventory(work: Path, targets: list[NspawnTarget]) -> Path:
    """An INI inventory naming each target host01..; each with its own key file setting."""
    lines = ["[fleet]"]
    for n, target in enumerate(targets, start=1):
        lines.append(
            f"host{n:02d} ansible_host={target.host} ansible_port={target.port} "
            f"ansible_user={target.user} ansible_ssh_private_key_file={target.key_path}"
        )
    path = work / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def _known_hosts(work: Path, targets: list[NspawnTarget]) -> Path:
    path = work / "known_hosts"
    path.write_text("".join(t.known_hosts_path.read_text() for t in targets))
    return path


def _fleet_args(work: Path, targets: list[NspawnTarget], forks: int) -> list[str]:
    return [
        "--inventory",
        str(_inventory(work, targets)),
        "--known-hosts",
        str(_known_hosts(work, targets)),
        "--forks",
        str(forks),
        "--run-dir",
        str(work / "fleet"),
    ]


def _imageprep(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IMAGEPREP, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _fleet_json(work: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((work / "fleet" / "fleet.json").read_text())
    return loaded


def _result(run_dir: str | Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((Path(run_dir) / "result.json").read_text())
    return loaded


@dataclass(frozen=True)
class Fleet:
    targets: list[NspawnTarget]
    work: Path
    backups: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def sixteen(target_image: TargetImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """16 targets booted at once, generalized by one `run --inventory --forks 16`."""
    work = tmp_path_factory.mktemp("fleet16")
    targets = [NspawnTarget(target_image) for _ in range(FLEET_SIZE)]
    with ExitStack() as teardown:
        for target in targets:
            teardown.callback(target.close)
        with ThreadPoolExecutor(max_workers=FLEET_SIZE) as pool:
            list(pool.map(NspawnTarget.start, targets))
        backups = work / "backups"
        result = _imageprep(
            "run", *_fleet_args(work, targets, FLEET_SIZE), "--backup", f"archive:{backups}"
        )
        for target in targets:
            target.wait_stopped(60)
        yield Fleet(targets, work, backups, result)


def test_sixteen_targets_generalize_at_once(sixteen: Fleet) -> None:
    """16 targets, --forks 16: the fleet exits 0 and every target is generalized and off."""
    result = sixteen.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [h["exit_code"] for h in _fleet_json(sixteen.work)["hosts"]] == [0] * FLEET_SIZE
    for target in sixteen.targets:
        assert target.exit_code == 0  # powered itself off
        assert target.guest_path("/etc/machine-id").read_text() == ""


def test_each_host_has_its_own_run_folder_and_backup(sixteen: Fleet) -> None:
    """Host N's run folder is FLEET/hostNN, its report names its target, its archive is apart."""
    hosts = _fleet_json(sixteen.work)["hosts"]
    for n, (host, target) in enumerate(zip(hosts, sixteen.targets, strict=True), start=1):
        assert host["name"] == f"host{n:02d}"
        assert host["run_dir"] == str(sixteen.work / "fleet" / host["name"])
        report = _result(host["run_dir"])
        assert report["target"] == f"ssh://{target.user}@{target.host}:{target.port}"
        assert Path(report["backup"]["reference"]).parent == sixteen.backups / host["name"]


def test_each_run_log_holds_only_its_own_host(sixteen: Fleet) -> None:
    """With 16 hosts at once, every record in a host's run.log.jsonl is that host's run's."""
    for host, target in zip(_fleet_json(sixteen.work)["hosts"], sixteen.targets, strict=True):
        lines = (Path(host["run_dir"]) / "run.log.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert len(records) > 50
        tagged = {r.get("target") for r in records if "target" in r}
        assert tagged == {f"ssh://{target.user}@{target.host}:{target.port}"}
        assert {r.get("run_id") for r in records} == {_result(host["run_dir"])["run_id"]}


def test_the_table_lists_every_host(sixteen: Fleet) -> None:
    """The console table has a row per host with exit 0 and the summary line."""
    rows = [line.split() for line in sixteen.result.stdout.splitlines()]
    assert [row[2:4] for row in rows if row and row[0].startswith("host")] == [
        ["0", "succeeded"]
    ] * FLEET_SIZE
    assert f"{FLEET_SIZE} host(s): {FLEET_SIZE} succeeded" in sixteen.result.stdout


def _without_waagent(root: Path) -> None:
    guest_path(root, "/usr/sbin/waagent").unlink()


def test_one_failing_host_does_not_stop_the_others(start_targets: Starter, tmp_path: Path) -> None:
    """One host fails its preflight (exit 3); the others generalize; the fleet exits 3."""
    targets = start_targets(3, prepare={1: _without_waagent})
    backup = "command:echo snapshot-of-$IMAGEPREP_TARGET_HOST"
    result = _imageprep("run", *_fleet_args(tmp_path, targets, 3), "--backup", backup)

    assert result.returncode == 3, result.stderr[-3000:]
    hosts = _fleet_json(tmp_path)["hosts"]
    assert [(h["exit_code"], h["status"]) for h in hosts] == [
        (0, "succeeded"),
        (3, "failed"),
        (0, "succeeded"),
    ]
    for host, target in zip(hosts, targets, strict=True):
        report = _result(host["run_dir"])
        assert report["backup"]["reference"] == f"snapshot-of-{target.host}"
    assert targets[0].wait_stopped(60)
    assert targets[2].wait_stopped(60)
    assert targets[1].is_running()
    row = next(line for line in result.stdout.splitlines() if line.startswith("host02 "))
    assert row.split()[2:4] == ["3", "failed"]


def _probe_args(work: Path) -> list[str]:
    """A probe playbook whose one step waits on the target while the test holds it."""
    return write_probe(
        work,
        f"""\
        - name: wait
          description: Says it started, then waits while the hold file exists
          become: true
          timeout: 600
          run: |
            touch {STARTED_FLAG}
            while [ -e {HOLD_FLAG} ]; do sleep 0.1; done
        """,
    )


def _hold(target: NspawnTarget) -> None:
    target.guest_path(HOLD_FLAG).write_text("")


def test_ctrl_c_interrupts_every_host_and_resume_finishes_the_fleet(
    start_targets: Starter, tmp_path: Path
) -> None:
    """SIGINT: each running host records exit 130, the unstarted one too; --resume finishes all."""
    targets = start_targets(3)
    for target in targets:
        _hold(target)
    args = [*_fleet_args(tmp_path, targets, 2), *_probe_args(tmp_path)]
    fleet = subprocess.Popen(
        [IMAGEPREP, "run", *args, "--no-backup", "--reason", "test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "IMAGEPREP_HEARTBEAT_SECONDS": "0"},
    )
    deadline = time.monotonic() + 120
    while not all(t.guest_path(STARTED_FLAG).exists() for t in targets[:2]):
        assert fleet.poll() is None, fleet.communicate()
        assert time.monotonic() < deadline, "the step never started on both hosts"
        time.sleep(0.05)
    fleet.send_signal(signal.SIGINT)
    _, stderr = fleet.communicate(timeout=60)

    assert fleet.returncode == INTERRUPTED, stderr[-3000:]
    hosts = _fleet_json(tmp_path)["hosts"]
    statuses = [(h["exit_code"], h["status"]) for h in hosts]
    assert statuses == [(INTERRUPTED, "interrupted")] * 3, stderr[-3000:]
    for host in hosts[:2]:
        report = _result(host["run_dir"])
        assert (report["exit_code"], report["status"]) == (INTERRUPTED, "interrupted")
        assert report["steps"][0]["status"] == "interrupted"
    assert hosts[2]["run_dir"] is None  # --forks 2: the third never started
    assert not targets[2].guest_path(STARTED_FLAG).exists()
    for target in targets:
        target.guest_path(HOLD_FLAG).unlink()

    resumed = _imageprep(
        "run", "--resume", str(tmp_path / "fleet"), "--known-hosts", str(tmp_path / "known_hosts")
    )

    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    hosts = _fleet_json(tmp_path)["hosts"]
    assert [h["exit_code"] for h in hosts] == [0, 0, 0]
    for host in hosts:
        report = _result(host["run_dir"])
        assert report["status"] == "succeeded"
    assert len(_result(hosts[0]["run_dir"])["sessions"]) == 2  # resumed, not started over
    assert len(_fleet_json(tmp_path)["sessions"]) == 2


WINDOWS_USER = "Administrator"
WINDOWS_PASSWORD = "Gold3n-Imag3!pw"  # noqa: S105  the WinRM test double's account


def test_a_fleet_mixes_ssh_and_winrm_hosts(
    start_targets: Starter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SSH target and a WinRM host (tests.winrm_server, a test double for Windows) in one
    `check --inventory`: each transport's options apply to its hosts; both pass."""
    (target,) = start_targets(1)
    users = tmp_path / "ntlm-users"
    users.write_text(ntlm_user_file_line(WINDOWS_USER, WINDOWS_PASSWORD))
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    (tmp_path / "tls").mkdir()
    tls = make_tls_files(tmp_path / "tls")
    machine = WindowsMachine(time_scale=0.01, sysprep_seconds=6.0)
    with WinRmTestServer(
        machine, username=WINDOWS_USER, password=WINDOWS_PASSWORD, tls=tls
    ) as server:
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(
            "all:\n  children:\n"
            "    linux:\n      hosts:\n"
            f"        deb01: {{ansible_host: {target.host}, ansible_user: {target.user},"
            f" ansible_ssh_private_key_file: {target.key_path}}}\n"
            "    windows:\n      vars: {ansible_connection: winrm, ansible_winrm_scheme: https}\n"
            "      hosts:\n"
            f"        win01: {{ansible_host: 127.0.0.1, ansible_port: {server.port},"
            f" ansible_user: {WINDOWS_USER}}}\n"
        )
        result = _imageprep(
            "check",
            "--inventory",
            str(inventory),
            "--known-hosts",
            str(_known_hosts(tmp_path, [target])),
            "--ca-cert",
            str(tls.ca_cert),
            "--password-env",
            "WINPASS",
            "--run-dir",
            str(tmp_path / "fleet"),
            env={"WINPASS": WINDOWS_PASSWORD},
        )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    hosts = {h["name"]: h for h in _fleet_json(tmp_path)["hosts"]}
    assert _result(hosts["deb01"]["run_dir"])["target"].startswith("ssh://")
    assert _result(hosts["win01"]["run_dir"])["target"].startswith("winrm+https://")
    assert machine.powered_on
    assert machine.sysprep_runs == []
