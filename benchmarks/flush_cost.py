"""Whether the cost of one flush grows with the number of buffered operations."""

from __future__ import annotations

import gc
import statistics
import time

from batcher import Batcher, Operation, ProvisionedResource, Watcher

from ._common import Figures, Settings, log, median_figures

__all__ = ["bench_flush_cost"]

#: Capacity per second; with a 0.1 s flush interval one flush may raise
#: 1,000 operations of cost 1.
CAPACITY = 10_000
FLUSH_INTERVAL = 0.1
RAISED_PER_FLUSH = 1_000
MAX_BATCH_SIZE = 100


class _FakeClock:
    """A clock that moves only when the benchmark advances it, so the pacer's
    budget is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ignore(batch: list[Operation]) -> None:
    """Watcher callback that does nothing."""


def _layout(count: int, watchers: list[Watcher]) -> list[Operation]:
    width = len(watchers)
    return [Operation(watchers[i % width], 1, None, True) for i in range(count)]


def _time_one_flush(
    layout: list[Operation], warm_up: list[Operation], max_concurrent_batches: int
) -> float:
    """Return the seconds of one ``_flush_step()`` over a buffer of ``layout``.

    A first, untimed flush raises ``warm_up`` so the worker threads already
    exist. The timed flush then starts with no batch inflight and with the
    pacer's budget at exactly ``RAISED_PER_FLUSH``.
    """
    clock = _FakeClock()
    batcher = Batcher(
        ProvisionedResource(CAPACITY),
        buffer_size=len(warm_up) + len(layout),
        flush_interval=FLUSH_INTERVAL,
        max_concurrent_batches=max_concurrent_batches,
        clock=clock,
    )
    try:
        for op in warm_up:
            batcher.put(op)
        for op in layout:
            batcher.put(op)
        batcher._flush_step()
        deadline = time.monotonic() + 10
        while batcher.inflight and time.monotonic() < deadline:
            time.sleep(0.001)
        clock.now += FLUSH_INTERVAL
        gc.collect()
        start = time.perf_counter()
        raised = batcher._flush_step()
        elapsed = time.perf_counter() - start
    finally:
        batcher.stop(timeout=5)
    if raised != RAISED_PER_FLUSH:
        raise RuntimeError(f"flush raised {raised}, expected {RAISED_PER_FLUSH}")
    return elapsed


def _median_flush(
    samples: int, layout: list[Operation], max_concurrent_batches: int
) -> float:
    warm_watcher = Watcher(_ignore, max_batch_size=MAX_BATCH_SIZE)
    times = []
    for _ in range(samples):
        warm_up = _layout(RAISED_PER_FLUSH, [warm_watcher])
        times.append(_time_one_flush(layout, warm_up, max_concurrent_batches))
    return statistics.median(times)


def bench_flush_cost(settings: Settings) -> Figures:
    """Time one flush raising 1,000 operations, 100,000 buffered over 1,000.

    The saturated case sets ``max_concurrent_batches`` to 10 with 20 watchers
    round-robin, so the slots run out during the walk. The flush then sets
    aside the operations of the 10 watchers without a slot. Its small buffer
    is 2,000, the least from which one flush can raise 1,000.
    """
    samples = settings.pick_int(15, 41)
    plain_watchers = [
        Watcher(_ignore, max_batch_size=MAX_BATCH_SIZE) for _ in range(10)
    ]
    plain_large = _layout(100_000, plain_watchers)
    plain_small = _layout(1_000, plain_watchers)
    busy_watchers = [Watcher(_ignore, max_batch_size=MAX_BATCH_SIZE) for _ in range(20)]
    busy_large = _layout(100_000, busy_watchers)
    busy_small = _layout(2_000, busy_watchers)

    def measure() -> Figures:
        large = _median_flush(samples, plain_large, 0)
        small = _median_flush(samples, plain_small, 0)
        busy_large_s = _median_flush(samples, busy_large, 10)
        busy_small_s = _median_flush(samples, busy_small, 10)
        figures = {
            "flush_ms_100k": large * 1000,
            "flush_ms_1k": small * 1000,
            "flush_cost_ratio_100k_vs_1k": large / small,
            "flush_cost_ratio_saturated": busy_large_s / busy_small_s,
        }
        log(f"  flush_cost: {figures}")
        return figures

    return median_figures(settings.repeats, measure)
