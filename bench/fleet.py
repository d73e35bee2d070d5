"""Benchmark (issue 13, P3 and P6): a fleet against the same number of raw scripts at once.

    sudo .venv/bin/python -m bench.fleet [--targets 16] [--repeat N]

Two ways, each on N fresh disposable Debian targets (tests/targets) booted at once:

* imageprep fleet: one `imageprep run --inventory HOSTS --forks N --backup archive:DIR`
  (one process, one thread per host);
* raw scripts: N `ssh … sudo bash -s` clients started at once, each sending the very
  commands a generalize run executes (from `imageprep plan --format json`, as in
  bench/generalize.py): the physical limit for this work on this machine.

Printed: wall time of the client side and until every target powered off, the ratio
fleet / raw (goal P3 <= 1.3x), and the fleet process's peak resident memory (goal P6 <=
400 MiB for 16 hosts). Every target must end generalized, or the way counts as failed.

    --quick   3 targets, one round: what the test suite runs so that this script cannot rot
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.generalize import (
    IMAGEPREP,
    POWER_OFF_TIMEOUT,
    _as_one_script,
    _planned_commands,
    installed_like_env,
)
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import ImageSpec, TargetImage, ensure_image

P3_GOAL = 1.3
P6_GOAL_MIB = 400


@dataclass(frozen=True)
class Sample:
    client_s: float
    until_off_s: float
    peak_rss_mib: float | None = None  # the fleet process (imageprep) only
    cpu_s: float | None = None  # its user + system CPU time


@contextmanager
def _booted(image: TargetImage, count: int) -> Iterator[list[NspawnTarget]]:
    """``count`` fresh targets, booted at the same time, torn down afterwards."""
    targets = [NspawnTarget(image) for _ in range(count)]
    with ExitStack() as teardown:
        for target in targets:
            teardown.callback(target.close)
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(NspawnTarget.start, targets))
        yield targets


def _all_off_and_generalized(targets: list[NspawnTarget], started: float) -> float:
    """Seconds from ``started`` until the last target powered off; checks each generalized."""
    deadline = started + POWER_OFF_TIMEOUT
    for target in targets:
        if not target.wait_stopped(max(1.0, deadline - time.monotonic())):
            raise RuntimeError(f"{target.name} did not power off")
    until_off = time.monotonic() - started
    # A way that failed half-way would look fast: each target must be generalized.
    for target in targets:
        if (
            target.guest_path("/etc/machine-id").read_text() != ""
            or target.guest_path(f"/home/{target.user}").exists()
        ):
            raise RuntimeError(f"{target.name} powered off but is not generalized")
    return until_off


def run_fleet(image: TargetImage, count: int, work: Path, env: dict[str, str]) -> Sample:
    with _booted(image, count) as targets:
        folder = Path(tempfile.mkdtemp(prefix="fleet-", dir=work))
        inventory = folder / "hosts.ini"
        inventory.write_text(
            "[bench]\n"
            + "".join(
                f"t{n:02d} ansible_host={t.host} ansible_port={t.port} ansible_user={t.user}\n"
                for n, t in enumerate(targets)
            )
        )
        known_hosts = folder / "known_hosts"
        known_hosts.write_text("".join(t.known_hosts_path.read_text() for t in targets))
        argv = [
            IMAGEPREP,
            "run",
            "--inventory",
            str(inventory),
            "--forks",
            str(count),
            "--identity",
            str(targets[0].key_path),
            "--known-hosts",
            str(known_hosts),
            "--backup",
            f"archive:{folder / 'backups'}",
            "--run-dir",
            str(folder / "fleet"),
            "--log-format",
            "json",
        ]
        started = time.monotonic()
        with open(folder / "stdout", "wb") as out, open(folder / "stderr", "wb") as err:
            process = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
            # wait4: this child's own peak RSS, not the largest of every child so far.
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        client = time.monotonic() - started
        if process.returncode != 0:
            raise RuntimeError(
                f"imageprep fleet exited {process.returncode}: "
                f"{(folder / 'stderr').read_text()[-2000:]}"
            )
        until_off = _all_off_and_generalized(targets, started)
        return Sample(client, until_off, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def run_raw(image: TargetImage, count: int) -> Sample:
    with _booted(image, count) as targets:
        script = _as_one_script(_planned_commands(targets[0]))  # the same image: same plan
        started = time.monotonic()
        clients = [
            subprocess.Popen(
                t.ssh_command("sudo", "bash", "-s"),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for t in targets
        ]
        for client in clients:
            assert client.stdin is not None
            client.stdin.write(script)
            client.stdin.close()
        for client in clients:
            client.wait()
        client_s = time.monotonic() - started
        return Sample(client_s, _all_off_and_generalized(targets, started))


def _median(samples: list[Sample]) -> Sample:
    peaks = [s.peak_rss_mib for s in samples if s.peak_rss_mib is not None]
    cpu = [s.cpu_s for s in samples if s.cpu_s is not None]
    return Sample(
        statistics.median(s.client_s for s in samples),
        statistics.median(s.until_off_s for s in samples),
        max(peaks) if peaks else None,
        statistics.median(cpu) if cpu else None,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--targets", type=int, default=16, help="targets per way (default 16)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per way (median shown)")
    parser.add_argument("--quick", action="store_true", help="3 targets, one round")
    args = parser.parse_args()
    count, repeat = (3, 1) if args.quick else (args.targets, args.repeat)
    image = ensure_image(ImageSpec())
    samples: dict[str, list[Sample]] = {"imageprep fleet": [], "raw scripts at once": []}
    with tempfile.TemporaryDirectory(prefix="imageprep-bench-fleet-") as tmp:
        env = installed_like_env(Path(tmp))
        ways: dict[str, Callable[[], Sample]] = {
            "imageprep fleet": lambda: run_fleet(image, count, Path(tmp), env),
            "raw scripts at once": lambda: run_raw(image, count),
        }
        for _ in range(repeat):  # alternate the ways, so drift hits both alike
            for name, way in ways.items():
                samples[name].append(way())
    results = {name: _median(taken) for name, taken in samples.items()}
    fleet, raw = results["imageprep fleet"], results["raw scripts at once"]
    print(f"{count} targets, --forks {count}, median of {repeat}")
    print(f"{'way':<24} {'client':>8} {'powered off':>12}")
    for name, sample in results.items():
        print(f"{name:<24} {sample.client_s:7.2f}s {sample.until_off_s:11.2f}s")
    print(
        f"P3 fleet / raw scripts until every target powered off: "
        f"{fleet.until_off_s / raw.until_off_s:.2f}x (goal <= {P3_GOAL}x)"
    )
    print(
        f"P6 peak RSS of the fleet process ({count} hosts): {fleet.peak_rss_mib:.0f} MiB"
        f" (goal <= {P6_GOAL_MIB} MiB for 16)"
    )
    print(f"CPU time of the fleet process: {fleet.cpu_s:.1f} s (on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
