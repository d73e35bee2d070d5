"""Benchmark: offline start-up of the CLI, as a ratio against a bare Python start.

    .venv/bin/python -m bench.startup [--rounds 15] [--quick]

Each command runs as a fresh process of this venv's ``imageprep`` entry point, side by
side with ``python -c pass`` (rounds interleaved, so a busy machine slows both alike);
the median wall time of each is printed with its ratio to the bare start and the goal of
issue 13 (P4). The catalog cache lives in a fresh temporary ``XDG_CACHE_HOME``: one run
before timing warms it, so ``warm`` rows measure a cache hit; ``cold`` rows run with
``IMAGEPREP_NO_CACHE=1`` (parse and validate every file, as the first run does).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(rounds: int, cases: tuple[Case, ...] = CASES) -> dict[str, float]:
    """Median seconds of ``python -c pass`` (key ``bare``) and of each case's label."""
    python = sys.executable
    imageprep = str(Path(python).with_name("imageprep"))
    times: dict[str, list[float]] = {"bare": [], **{c.label: [] for c in cases}}
    with tempfile.TemporaryDirectory() as cache_home:
        env = {**os.environ, "XDG_CACHE_HOME": cache_home}
        env.pop("IMAGEPREP_NO_CACHE", None)
        cold = {**env, "IMAGEPREP_NO_CACHE": "1"}
        for case in cases:  # warm the cache (and the OS page cache) once
            _time([imageprep, *case.args], env if case.cache else cold)
        for _ in range(rounds):
            times["bare"].append(_time([python, "-c", "pass"], env))
            for case in cases:
                times[case.label].append(
                    _time([imageprep, *case.args], env if case.cache else cold)
                )
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="one round (for the tests)")
    args = parser.parse_args()
    medians = measure(1 if args.quick else args.rounds)
    bare = medians["bare"]
    print(f"{'python -c pass':34} {bare * 1000:7.1f} ms")
    for case in CASES:
        ratio = medians[case.label] / bare
        shown = ""
        if case.goal is not None:
            shown = f"goal <= {case.goal:g}x {'met' if ratio <= case.goal else 'MISSED'}"
        print(f"{case.label:34} {medians[case.label] * 1000:7.1f} ms {ratio:5.1f}x  {shown}")


if __name__ == "__main__":
    main()
