"""Benchmark: one `imageprep run` (generalize) against baselines in the same run.

    sudo .venv/bin/python -m bench.generalize [--repeat N]

Each measurement uses a fresh disposable Debian target (tests/targets). The baselines run
the very same step commands (taken from `imageprep plan --format json` against the
target) without imageprep:

* one-script: one SSH connection, `sudo bash -s` with every step on stdin: the physical
  limit for this work (performance.md);
* ssh-per-step: a new SSH connection and a sudo per step, the way a naive tool (or
  Ansible without pipelining) pays for each step (up to waagent's deprovisioning, which
  deletes the login user; the rest share one connection).

Printed: wall time of the client, time until the target powered off, and imageprep's
peak resident memory. Numbers are this machine's; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import ImageSpec, TargetImage, ensure_image

IMAGEPREP = str(Path(sys.executable).with_name("imageprep"))
POWER_OFF_TIMEOUT = 120.0
LAST_LOGIN_BEFORE = "deprovision/waagent-deprovision"


@dataclass(frozen=True)
class Sample:
    client_s: float
    until_off_s: float


def _key_args(target: NspawnTarget) -> list[str]:
    return [
        "--target",
        f"ssh://{target.user}@{target.host}:{target.port}",
        "--identity",
        str(target.key_path),
        "--known-hosts",
        str(target.known_hosts_path),
    ]


@dataclass(frozen=True)
class PlannedCommand:
    key: str
    command: str


def _planned_commands(target: NspawnTarget) -> list[PlannedCommand]:
    """The commands a generalize run executes on this target, in order."""
    completed = subprocess.run(
        [IMAGEPREP, "plan", *_key_args(target), "--format", "json", "--log-format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    plan = json.loads(completed.stdout)
    return [
        PlannedCommand(f"{s['phase']}/{s['name']}", s["command"])
        for s in plan["steps"]
        if s["skip_reason"] is None and s["condition"] is not False
    ]


def _as_one_script(commands: list[PlannedCommand]) -> bytes:
    return "".join(
        f"bash <<'IMAGEPREP_BENCH_{i}'\n{c.command}\nIMAGEPREP_BENCH_{i}\n"
        for i, c in enumerate(commands)
    ).encode()


def _timed(target: NspawnTarget, client: Callable[[], None]) -> Sample:
    started = time.monotonic()
    client()
    client_done = time.monotonic()
    if not target.wait_stopped(POWER_OFF_TIMEOUT):
        raise RuntimeError(f"{target.name} did not power off")
    return Sample(client_done - started, time.monotonic() - started)


def run_imageprep(image: TargetImage, work: Path) -> Sample:
    with NspawnTarget(image) as target:
        backups = work / "backups"

        def client() -> None:
            subprocess.run(
                [
                    IMAGEPREP,
                    "run",
                    *_key_args(target),
                    "--backup",
                    f"archive:{backups}",
                    "--run-dir",
                    str(work / f"run-{time.monotonic_ns()}"),
                    "--log-format",
                    "json",
                ],
                capture_output=True,
                check=True,
            )

        return _timed(target, client)


def run_one_script(image: TargetImage) -> Sample:
    with NspawnTarget(image) as target:
        script = _as_one_script(_planned_commands(target))

        def client() -> None:
            subprocess.run(target.ssh_command("sudo", "bash", "-s"), input=script, check=False)

        return _timed(target, client)


def run_ssh_per_step(image: TargetImage) -> Sample:
    with NspawnTarget(image) as target:
        commands = _planned_commands(target)
        # Once waagent ran the login user is gone (the "handshake failed" Packer users
        # meet) and then the host keys go too, so from that step on everything has to
        # share one connection.
        first = next(i for i, c in enumerate(commands) if c.key == LAST_LOGIN_BEFORE)
        batches = [_as_one_script([c]) for c in commands[:first]]
        batches.append(_as_one_script(commands[first:]))

        def client() -> None:
            for batch in batches:
                subprocess.run(
                    target.ssh_command("sudo", "bash", "-s"),
                    input=batch,
                    capture_output=True,
                    check=False,
                )

        return _timed(target, client)


def _median(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.client_s for s in samples),
        statistics.median(s.until_off_s for s in samples),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per way (median is shown)")
    args = parser.parse_args()
    image = ensure_image(ImageSpec())
    with tempfile.TemporaryDirectory(prefix="imageprep-bench-") as tmp:
        work = Path(tmp)
        results = {
            "imageprep run": _median([run_imageprep(image, work) for _ in range(args.repeat)]),
            "baseline: one script, one connection": _median(
                [run_one_script(image) for _ in range(args.repeat)]
            ),
            "baseline: ssh + sudo per step": _median(
                [run_ssh_per_step(image) for _ in range(args.repeat)]
            ),
        }
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    limit = results["baseline: one script, one connection"]
    print(
        f"{'way (median of ' + str(args.repeat) + ')':<40} {'client':>8} {'x limit':>8}"
        f" {'powered off':>12} {'x limit':>8}"
    )
    for name, sample in results.items():
        print(
            f"{name:<40} {sample.client_s:7.2f}s {sample.client_s / limit.client_s:7.1f}x"
            f" {sample.until_off_s:11.2f}s {sample.until_off_s / limit.until_off_s:7.1f}x"
        )
    print(f"peak RSS of any child process (imageprep, ssh): {peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
