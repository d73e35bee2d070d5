"""Benchmark: offline start-up of the CLI, as a ratio against a bare Python start.

    .venv/bin/python -m bench.startup [--rounds 15] [--quick]

Each command runs as a fresh process of this venv's ``imageprep`` entry point, side by
side with ``python -c pass`` (rounds interleaved, so a busy machine slows both alike);
the median wall time of each is printed with its ratio to the bare start and the goal of
issue 13 (P4), for the wall clock and for the CPU time of the process (user + system,
which a busy machine disturbs far less; each goal is judged on both). The catalog cache
and the compiled bytecode live in a fresh temporary directory; one run of each command
before timing warms them, so ``warm`` rows measure a cache hit; ``cold`` rows run with
``IMAGEPREP_NO_CACHE=1`` (parse and validate every file, as the first run does).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.timing import Timing, median_timings

__all__ = ["Case", "main", "measure"]


@dataclass(frozen=True)
class Case:
    """One command to time: its label, its arguments, its goal (None: none set)."""

    label: str
    args: tuple[str, ...]
    goal: float | None
    cache: bool = True


CASES = (
    Case("--version", ("--version",), 4.0),
    Case("plan --profile debian (warm)", ("plan", "--profile", "debian"), 8.0),
    Case("profiles list (warm)", ("profiles", "list"), 8.0),
    Case("playbooks list (warm)", ("playbooks", "list"), 8.0),
    Case("validate", ("validate",), 15.0),
    Case("plan --profile debian (cold)", ("plan", "--profile", "debian"), None, cache=False),
    Case("validate (cold)", ("validate",), None, cache=False),
)


def _time(argv: list[str], env: dict[str, str]) -> Timing:
    """Wall-clock and CPU (user + system) seconds of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    # wait4, not wait: the child's own CPU time, which a busy machine disturbs far less
    # than the wall clock (both are printed, and each goal is judged on both).
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, argv)
    return Timing(wall, usage.ru_utime + usage.ru_stime)


def measure(rounds: int, cases: tuple[Case, ...] = CASES) -> dict[str, Timing]:
    """Median timing of ``python -c pass`` (key ``bare``) and of each case's label."""
    python = sys.executable
    imageprep = str(Path(python).with_name("imageprep"))
    times: dict[str, list[Timing]] = {"bare": [], **{c.label: [] for c in cases}}
    with tempfile.TemporaryDirectory() as scratch:
        # Compiled bytecode as an installed package has it (the warm-up run writes it,
        # outside the tree): with PYTHONDONTWRITEBYTECODE every start compiles every module.
        env = {
            **os.environ,
            "XDG_CACHE_HOME": str(Path(scratch) / "cache"),
            "PYTHONPYCACHEPREFIX": str(Path(scratch) / "pycache"),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("IMAGEPREP_NO_CACHE", None)
        cold = {**env, "IMAGEPREP_NO_CACHE": "1"}
        _time([python, "-c", "pass"], env)
        for case in cases:  # warm the caches (catalog, bytecode, the OS's pages) once
            _time([imageprep, *case.args], env if case.cache else cold)
        for _ in range(rounds):
            times["bare"].append(_time([python, "-c", "pass"], env))
            for case in cases:
                times[case.label].append(
                    _time([imageprep, *case.args], env if case.cache else cold)
                )
    return median_timings(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="one round (for the tests)")
    args = parser.parse_args()
    medians = measure(1 if args.quick else args.rounds)
    bare = medians["bare"]
    print(f"{'':34} {'wall':>9} {'ratio':>6}   {'cpu':>9} {'ratio':>6}")
    print(f"{'python -c pass':34} {bare.wall * 1000:6.1f} ms {'':6}   {bare.cpu * 1000:6.1f} ms")
    for case in CASES:
        got = medians[case.label]
        ratio = got.wall / bare.wall
        shown = ""
        if case.goal is not None:  # judged on both clocks: a busy machine skews the wall one
            verdicts = [
                f"{clock} {'met' if value <= case.goal else 'MISSED'}"
                for clock, value in (("wall", ratio), ("cpu", got.cpu / bare.cpu))
            ]
            shown = f"goal <= {case.goal:g}x: {', '.join(verdicts)}"
        print(
            f"{case.label:34} {got.wall * 1000:6.1f} ms {ratio:5.1f}x   "
            f"{got.cpu * 1000:6.1f} ms {got.cpu / bare.cpu:5.1f}x  {shown}"
        )


if __name__ == "__main__":
    main()
