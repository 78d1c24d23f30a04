"""Rate accuracy under overload: batcher against pyrate-limiter and limits.

One job for all three: capacity 10,000 per second, operations costing 1 to
250 (uniform, seeded), 4 producer threads whose demand is far above the
capacity. Each limiter is driven the way its documentation shows, and each
admitted item is timed with ``time.monotonic()`` when it is admitted (for
batcher, when its batch is raised). Windows are half-open, [t, t + w).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pyrate_limiter import Duration, Limiter, Rate

from batcher import (
    Batcher,
    BatcherStoppedError,
    Event,
    Operation,
    ProvisionedResource,
    Watcher,
    events,
)

from ._common import Figures, Settings, log, max_window_cost, median_figures

__all__ = ["bench_utilisation", "rate_figures"]

CAPACITY = 10_000
PRODUCERS = 4
MIN_COST = 1
MAX_COST = 250
SEED = 20240601


class _Recorder:
    """Admission times and costs, appended from several threads."""

    def __init__(self) -> None:
        # Guards times and costs, so the two lists stay the same length.
        self._lock = threading.Lock()
        self.times: list[float] = []
        self.costs: list[int] = []

    def add(self, when: float, cost: int) -> None:
        with self._lock:
            self.times.append(when)
            self.costs.append(cost)

    def sorted_pairs(self) -> tuple[list[float], list[int]]:
        with self._lock:
            pairs = sorted(zip(self.times, self.costs, strict=True))
        return [t for t, _ in pairs], [c for _, c in pairs]


def rate_figures(
    recorder: _Recorder, start: float, seconds: float, capacity: int, prefix: str
) -> Figures:
    """Return utilisation and the two window ratios for one run.

    Utilisation counts cost admitted in [start, start + seconds); the
    windows cover every admission, including those after the run ended.
    """
    times, costs = recorder.sorted_pairs()
    end = start + seconds
    delivered = sum(c for t, c in zip(times, costs, strict=True) if start <= t < end)
    return {
        f"{prefix}utilisation": delivered / (capacity * seconds),
        f"{prefix}max_window_ratio": max_window_cost(times, costs, 1.0) / capacity,
        f"{prefix}max_100ms_window_ratio": max_window_cost(times, costs, 0.1)
        / (capacity / 10),
    }


def _run_producers(
    produce: Callable[[random.Random, threading.Event], None], seconds: float
) -> float:
    """Run ``PRODUCERS`` threads of ``produce`` for ``seconds``; return the start."""
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=produce,
            args=(random.Random(SEED + i), stop),
            name=f"bench-producer-{i}",
        )
        for i in range(PRODUCERS)
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    return start


def _ignore(batch: list[Operation]) -> None:
    """Watcher callback that does nothing."""


def _run_batcher(seconds: float) -> Figures:
    recorder = _Recorder()

    def on_event(event: Event) -> None:
        if event.name == events.BATCH:
            ops: list[Operation] = event.metadata
            recorder.add(time.monotonic(), sum(op.cost for op in ops))

    watchers = [Watcher(_ignore, max_batch_size=100) for _ in range(10)]
    batcher = Batcher(ProvisionedResource(CAPACITY), emit_batch=True)
    batcher.events.subscribe(on_event)

    def produce(rng: random.Random, stop: threading.Event) -> None:
        put = batcher.put
        n = 0
        while not stop.is_set():
            cost = rng.randint(MIN_COST, MAX_COST)
            try:
                put(Operation(watchers[n % len(watchers)], cost, None, True))
            except BatcherStoppedError:
                return
            n += 1

    batcher.start()
    start = _run_producers(produce, seconds)
    # Producers blocked on the full buffer leave when stop() rejects put().
    batcher.stop(timeout=0)
    return rate_figures(recorder, start, seconds, CAPACITY, "")


def _run_pyrate(seconds: float) -> Figures:
    recorder = _Recorder()
    # pyrate-limiter 4.x: try_acquire() blocks by default until the weight fits.
    limiter = Limiter(Rate(CAPACITY, Duration.SECOND))

    def produce(rng: random.Random, stop: threading.Event) -> None:
        while not stop.is_set():
            cost = rng.randint(MIN_COST, MAX_COST)
            if limiter.try_acquire("bench", weight=cost):
                recorder.add(time.monotonic(), cost)

    threads_before = set(threading.enumerate())
    start = _run_producers(produce, seconds)
    _join_new_threads(threads_before)
    limiter.close()
    return rate_figures(recorder, start, seconds, CAPACITY, "pyrate_")


def _run_limits(seconds: float) -> Figures:
    recorder = _Recorder()
    limiter = MovingWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(CAPACITY)

    def produce(rng: random.Random, stop: threading.Event) -> None:
        while not stop.is_set():
            cost = rng.randint(MIN_COST, MAX_COST)
            # hit() returns at once, so on a refusal the producer sleeps until
            # the window's reset time from get_window_stats() and tries again.
            # The 1 ms floor keeps a reset time already passed from spinning.
            while not limiter.hit(item, "bench", cost=cost):
                if stop.is_set():
                    return
                reset = limiter.get_window_stats(item, "bench").reset_time
                time.sleep(max(reset - time.time(), 0.001))
            recorder.add(time.monotonic(), cost)

    threads_before = set(threading.enumerate())
    start = _run_producers(produce, seconds)
    _join_new_threads(threads_before)
    return rate_figures(recorder, start, seconds, CAPACITY, "limits_")


def _join_new_threads(before: set[threading.Thread]) -> None:
    """Join the producer threads started since ``before`` was taken."""
    for thread in threading.enumerate():
        if thread not in before and thread.name.startswith("bench-producer-"):
            thread.join()


def bench_utilisation(settings: Settings) -> Figures:
    """Utilisation and window ratios of batcher, pyrate-limiter and limits."""
    seconds = settings.pick(5.0, 20.0)

    def measure() -> Figures:
        figures: Figures = {}
        for run in (_run_batcher, _run_pyrate, _run_limits):
            result = run(seconds)
            log(f"  {run.__name__}: {result}")
            figures.update(result)
        return figures

    return median_figures(settings.repeats, measure)
