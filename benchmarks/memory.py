"""Memory that each operation costs while it waits in the buffer."""

from __future__ import annotations

import gc
import tracemalloc

from batcher import Batcher, Operation, Watcher

from ._common import Figures, Settings, log, median_figures

__all__ = ["bench_memory"]

#: Operations waiting in the buffer while memory is measured.
BUFFERED = 100_000


def _ignore(batch: list[Operation]) -> None:
    """Watcher callback that does nothing."""


def _bytes_per_op() -> float:
    """Return the traced bytes per operation put into an idle Batcher.

    The Batcher is never started, so every operation stays in the buffer.
    The payload is None and the cost a small cached int, so the figure is
    the Operation object plus the buffer's share, without the caller's data.
    """
    watcher = Watcher(_ignore, max_batch_size=100)
    batcher = Batcher(buffer_size=BUFFERED)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        put = batcher.put
        for _ in range(BUFFERED):
            put(Operation(watcher, 1, None, True))
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if batcher.operations_in_buffer != BUFFERED:
        raise RuntimeError(
            f"expected {BUFFERED} buffered operations, found "
            f"{batcher.operations_in_buffer}"
        )
    batcher.stop(timeout=0)
    return (after - before) / BUFFERED


def bench_memory(settings: Settings) -> Figures:
    """Bytes per buffered operation with 100,000 buffered, payload excluded."""

    def measure() -> Figures:
        figures = {"bytes_per_buffered_op": _bytes_per_op()}
        log(f"  memory: {figures}")
        return figures

    return median_figures(settings.repeats, measure)
