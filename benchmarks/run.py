"""Run the benchmarks, print a table of figures and optionally write JSON.

Usage: ``python -m benchmarks [--quick] [--only put,utilisation] [--json FILE]``
(``python benchmarks/run.py`` is the same). BENCHMARKS.md describes each
figure and records a full run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Figures, Settings, log  # noqa: E402

__all__ = ["Benchmark", "Target", "TARGETS", "benchmarks", "main"]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its name for ``--only`` and the function that runs it."""

    name: str
    run: Callable[[Settings], Figures]
    description: str


@dataclass(frozen=True)
class Target:
    """A bound that a figure should meet: at least or at most ``bound``."""

    bound: float
    at_least: bool

    def met(self, value: float) -> bool:
        return value >= self.bound if self.at_least else value <= self.bound

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.bound:g}"


TARGETS: dict[str, Target] = {
    "put_ratio_vs_queue": Target(1.0, True),
    "end_to_end_ratio_vs_queue": Target(1.5, True),
    "bytes_per_buffered_op": Target(120, False),
    "flush_cost_ratio_100k_vs_1k": Target(1.5, False),
    "utilisation": Target(0.98, True),
    "max_window_ratio": Target(1.0, False),
    "max_100ms_window_ratio": Target(1.5, False),
    "ramp_s": Target(0.5, False),
    "shared_utilisation": Target(0.95, True),
    "shared_max_window_ratio": Target(1.0, False),
}


def benchmarks() -> list[Benchmark]:
    """Return every benchmark in the order the runner runs them."""
    from benchmarks.accuracy import bench_utilisation
    from benchmarks.flush_cost import bench_flush_cost
    from benchmarks.memory import bench_memory
    from benchmarks.shared import bench_scale_partitions, bench_shared
    from benchmarks.throughput import bench_end_to_end, bench_put, bench_scale_watchers

    return [
        Benchmark("put", bench_put, "put() against queue.Queue.put()"),
        Benchmark("end_to_end", bench_end_to_end, "put() to callback, 10 watchers"),
        Benchmark("memory", bench_memory, "bytes per buffered operation"),
        Benchmark("flush_cost", bench_flush_cost, "one flush, 100k vs 1k buffered"),
        Benchmark("utilisation", bench_utilisation, "rate accuracy vs peers"),
        Benchmark("scale_watchers", bench_scale_watchers, "1,000 vs 10 watchers"),
        Benchmark("shared", bench_shared, "shared capacity on Azurite"),
        Benchmark("scale_partitions", bench_scale_partitions, "ramp, 100 vs 18"),
    ]


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _comparisons(figures: Figures) -> dict[str, str]:
    """Return the status of figures compared with a figure, not a fixed bound."""
    notes: dict[str, str] = {}
    ours = figures.get("storage_requests_per_s")
    theirs = figures.get("goalgo_storage_requests_per_s")
    if ours is not None and theirs is not None:
        met = ours < theirs
        notes["storage_requests_per_s"] = (
            f"< goalgo {_format_value(theirs)}: {'met' if met else 'MISSED'}"
        )
    return notes


def format_table(figures: Figures) -> str:
    """Return the figures as an aligned text table with targets."""
    notes = _comparisons(figures)
    rows = [("figure", "value", "target")]
    for key, value in figures.items():
        target = TARGETS.get(key)
        if target is not None:
            status = "met" if target.met(value) else "MISSED"
            note = f"{target}: {status}"
        else:
            note = notes.get(key, "")
        rows.append((key, _format_value(value), note))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}".rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = [bench.name for bench in benchmarks()]

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure batcher against queue.Queue, pyrate-limiter, limits "
        "and an emulation of the Go library's lease loop.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="run each benchmark for a few seconds, once (the set ends in under "
        "three minutes on 2 cores); figures are noisier",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated benchmarks to run, from: {','.join(names)}",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs per measurement whose median is reported (default 1 with "
        "--quick, 3 otherwise)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    args = parser.parse_args(argv)

    selected = [name for name in args.only.split(",") if name]
    unknown = sorted(set(selected) - set(names))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {names}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; return the process exit status."""
    args = _parse_args(argv)
    repeats = args.repeats
    if repeats is None:
        repeats = 1 if args.quick else 3
    settings = Settings(quick=args.quick, repeats=repeats)
    selected = {name for name in args.only.split(",") if name}

    log(
        f"python {platform.python_version()}, {os.cpu_count()} cores, "
        f"{'quick' if args.quick else 'full'} run, {repeats} repeats"
    )
    figures: Figures = {}
    started = time.monotonic()
    for bench in benchmarks():
        if selected and bench.name not in selected:
            continue
        log(f"{bench.name}: {bench.description}")
        bench_started = time.monotonic()
        figures.update(bench.run(settings))
        log(f"{bench.name}: done in {time.monotonic() - bench_started:.1f} s")
    elapsed = time.monotonic() - started

    print(format_table(figures))
    print(f"\nwall time {elapsed:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
