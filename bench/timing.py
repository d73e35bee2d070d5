"""What the timing benches share: a wall and CPU time, and the median of many."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Wall-clock and CPU seconds of one measurement (each bench says whose CPU)."""

    wall: float
    cpu: float


def median_timings(samples: Mapping[str, Iterable[Timing]]) -> dict[str, Timing]:
    """Each name's median wall time and median CPU time (taken apart, as medians are)."""
    result = {}
    for name, timings in samples.items():
        taken = list(timings)
        result[name] = Timing(
            statistics.median(t.wall for t in taken), statistics.median(t.cpu for t in taken)
        )
    return result
