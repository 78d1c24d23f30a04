"""Throughput of ``put()`` and of the hand-over from ``put()`` to a callback.

Both run against ``queue.Queue`` in the same process, because the machine's
speed changes from run to run and only a ratio measured side by side holds.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence

from batcher import Batcher, Operation, Watcher

from ._common import Figures, Settings, log, median_figures

__all__ = ["bench_end_to_end", "bench_put", "bench_scale_watchers"]

#: Operations per watcher batch in the end-to-end runs.
MAX_BATCH_SIZE = 100


def _ignore(batch: list[Operation]) -> None:
    """Watcher callback that does nothing."""


def _operations(count: int, watchers: Sequence[Watcher]) -> list[Operation]:
    """Build ``count`` batchable operations of cost 1, round-robin over watchers."""
    width = len(watchers)
    return [Operation(watchers[i % width], 1, None, True) for i in range(count)]


def _split(ops: list[Operation], parts: int) -> list[list[Operation]]:
    return [ops[i::parts] for i in range(parts)]


def _time_producers(
    put: Callable[[Operation], None], slices: list[list[Operation]]
) -> float:
    """Return the seconds that ``len(slices)`` threads take to put their slices.

    The clock starts when every thread has passed a barrier and stops when
    the last one ends.
    """
    barrier = threading.Barrier(len(slices) + 1)

    def produce(chunk: list[Operation]) -> None:
        barrier.wait()
        for op in chunk:
            put(op)

    threads = [
        threading.Thread(target=produce, args=(chunk,), name=f"bench-producer-{i}")
        for i, chunk in enumerate(slices)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def _time_batcher_put(ops: list[Operation], producers: int, running: bool) -> float:
    # The buffer has room for every operation, so put() never blocks. When running,
    # the flush thread drains the buffer concurrently, as in real use;
    # otherwise the figure is the cost of put() alone.
    batcher = Batcher(buffer_size=len(ops) + 1)
    if running:
        batcher.start()
    try:
        if producers == 1:
            put = batcher.put
            start = time.perf_counter()
            for op in ops:
                put(op)
            return time.perf_counter() - start
        return _time_producers(batcher.put, _split(ops, producers))
    finally:
        batcher.stop(timeout=10 if running else 0)


def _time_queue_put(ops: list[Operation], producers: int) -> float:
    fifo: queue.Queue[Operation] = queue.Queue()
    if producers == 1:
        put = fifo.put
        start = time.perf_counter()
        for op in ops:
            put(op)
        return time.perf_counter() - start
    return _time_producers(fifo.put, _split(ops, producers))


def bench_put(settings: Settings) -> Figures:
    """``Batcher.put()`` against ``queue.Queue.put()``, 1 and 4 producer threads.

    The queue has no consumer, while the running Batcher's flush thread
    walks the buffer under the same interpreter lock. The not-started
    figure isolates the cost of ``put()`` itself.
    """
    count = settings.pick_int(1_000_000, 2_000_000)
    watcher = Watcher(_ignore, max_batch_size=MAX_BATCH_SIZE)
    ops = _operations(count, [watcher])

    def measure() -> Figures:
        ours = _time_batcher_put(ops, 1, running=True)
        theirs = _time_queue_put(ops, 1)
        ours_idle = _time_batcher_put(ops, 1, running=False)
        ours4 = _time_batcher_put(ops, 4, running=True)
        theirs4 = _time_queue_put(ops, 4)
        figures = {
            "put_ops_per_s": count / ours,
            "put_ratio_vs_queue": theirs / ours,
            "put_not_started_ratio_vs_queue": theirs / ours_idle,
            "put4_ops_per_s": count / ours4,
            "put4_ratio_vs_queue": theirs4 / ours4,
        }
        log(f"  put: {figures}")
        return figures

    return median_figures(settings.repeats, measure)


class _Countdown:
    """Count delivered operations and signal when all of them arrived."""

    def __init__(self, expected: int) -> None:
        # Guards _received; callbacks run on several worker threads at once.
        self._received_lock = threading.Lock()
        self._received = 0
        self._expected = expected
        self.done = threading.Event()

    def add(self, count: int) -> None:
        with self._received_lock:
            self._received += count
            finished = self._received >= self._expected
        if finished:
            self.done.set()


def _time_batcher_end_to_end(count: int, watcher_count: int) -> float:
    countdown = _Countdown(count)

    def receive(batch: list[Operation]) -> None:
        countdown.add(len(batch))

    watchers = [
        Watcher(receive, max_batch_size=MAX_BATCH_SIZE) for _ in range(watcher_count)
    ]
    ops = _operations(count, watchers)
    # The buffer has room for every operation, like the unbounded queue of
    # the baseline. The flush interval is the default 0.1 s.
    batcher = Batcher(buffer_size=count + 1)
    batcher.start()
    try:
        put = batcher.put
        start = time.perf_counter()
        for op in ops:
            put(op)
        # Without this the run would end up to one flush interval late.
        batcher.flush()
        if not countdown.done.wait(120):
            raise TimeoutError(f"end-to-end run did not deliver {count} operations")
        return time.perf_counter() - start
    finally:
        batcher.stop()


def _time_queue_end_to_end(count: int) -> float:
    watcher = Watcher(_ignore)
    ops = _operations(count, [watcher])
    fifo: queue.Queue[Operation] = queue.Queue()
    done = threading.Event()

    def consume() -> None:
        get = fifo.get
        for _ in range(count):
            get()
        done.set()

    consumer = threading.Thread(target=consume, name="bench-consumer")
    consumer.start()
    put = fifo.put
    start = time.perf_counter()
    for op in ops:
        put(op)
    done.wait()
    elapsed = time.perf_counter() - start
    consumer.join()
    return elapsed


def bench_end_to_end(settings: Settings) -> Figures:
    """Operations per second from ``put()`` to the callback, 10 watchers."""
    count = settings.pick_int(100_000, 500_000)

    def measure() -> Figures:
        ours = _time_batcher_end_to_end(count, 10)
        theirs = _time_queue_end_to_end(count)
        figures = {
            "end_to_end_ops_per_s": count / ours,
            "end_to_end_ratio_vs_queue": theirs / ours,
        }
        log(f"  end_to_end: {figures}")
        return figures

    return median_figures(settings.repeats, measure)


def bench_scale_watchers(settings: Settings) -> Figures:
    """Per-operation cost of the end-to-end run with 1,000 watchers over 10."""
    count = settings.pick_int(100_000, 500_000)

    def measure() -> Figures:
        few = _time_batcher_end_to_end(count, 10)
        many = _time_batcher_end_to_end(count, 1_000)
        figures = {"scale_watchers_ratio": many / few}
        log(f"  scale_watchers: {figures}")
        return figures

    return median_figures(settings.repeats, measure)
