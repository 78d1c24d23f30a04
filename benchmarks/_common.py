"""Helpers shared by the benchmarks: settings, repeats and window arithmetic."""

from __future__ import annotations

import bisect
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Figures",
    "Settings",
    "log",
    "max_window_cost",
    "median_figures",
]

#: Figures that one benchmark returns, keyed by the names in BENCHMARKS.md.
Figures = dict[str, float]


@dataclass(frozen=True)
class Settings:
    """How long and how often each benchmark runs."""

    quick: bool
    #: Times each measurement is repeated; the median is reported.
    repeats: int

    def pick(self, quick: float, full: float) -> float:
        """Return ``quick`` in a quick run and ``full`` otherwise."""
        return quick if self.quick else full

    def pick_int(self, quick: int, full: int) -> int:
        """Return ``quick`` in a quick run and ``full`` otherwise."""
        return quick if self.quick else full


def log(message: str) -> None:
    """Write a progress line to stderr, so stdout holds only the table."""
    print(message, file=sys.stderr, flush=True)


def median_figures(repeats: int, measure: Callable[[], Figures]) -> Figures:
    """Run ``measure`` ``repeats`` times and return the median of each figure.

    Ratios are computed inside each run (ours over the baseline of the same
    run) and the median is taken of those ratios, so a noisy neighbour that
    slows one run slows both sides of its ratio.
    """
    runs = [measure() for _ in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def max_window_cost(times: Sequence[float], costs: Sequence[int], width: float) -> int:
    """Return the largest total cost in any half-open window [t, t + width).

    ``times`` must be sorted. The maximum is reached by a window that starts
    at one of the event times, so only those starts are tried.
    """
    if len(times) != len(costs):
        raise ValueError(
            f"times and costs differ in length: {len(times)} != {len(costs)}"
        )
    prefix = [0]
    for cost in costs:
        prefix.append(prefix[-1] + cost)
    best = 0
    for start, t in enumerate(times):
        end = bisect.bisect_left(times, t + width, lo=start)
        best = max(best, prefix[end] - prefix[start])
    return best
