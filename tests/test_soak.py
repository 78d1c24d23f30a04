"""Soak: 8 producer threads, 50 watchers, random costs, exact accounting.

The normal suite runs 100,000 operations. ``scripts/soak`` runs the full
1,000,000 by setting ``BATCHER_SOAK_OPS``; it also sets
``BATCHER_SOAK_REPORT`` to a file that receives the measured figures as
JSON.
"""

from __future__ import annotations

import gc
import json
import os
import random
import threading
import time
import tracemalloc

import pytest

from batcher import Batcher, Operation, ProvisionedResource, Watcher

SOAK_OPS = int(os.environ.get("BATCHER_SOAK_OPS", "100000"))
# Capacity per second; costs average 10.5, so 1,000,000 operations need
# about 10.5 s of capacity and the limit binds during the run.
SOAK_CAPACITY = int(os.environ.get("BATCHER_SOAK_CAPACITY", "1000000"))
PRODUCERS = 8
WATCHERS = 50
MAX_BATCH_SIZES = [0, 1, 2, 5, 10, 25, 50, 100, 250, 500]
# Memory that may stay allocated after the Batcher is stopped and released:
# interpreter caches (logging, threading, code objects) that the first run
# fills, and none of it proportional to the number of operations.
MEMORY_MARGIN_BYTES = 512 * 1024


class Tally:
    """Counts deliveries per operation id, and order faults inside a batch."""

    def __init__(self, count: int, per_producer: int) -> None:
        self._per_producer = per_producer
        self._lock = threading.Lock()
        self.deliveries = bytearray(count)
        self.order_faults = 0
        self.batches = 0

    def callback(self, ops: list[Operation]) -> None:
        last_sequence: dict[int, int] = {}
        faults = 0
        for op in ops:
            producer, sequence = divmod(op.payload, self._per_producer)
            if last_sequence.get(producer, -1) >= sequence:
                faults += 1
            last_sequence[producer] = sequence
        with self._lock:
            for op in ops:
                self.deliveries[op.payload] = min(self.deliveries[op.payload] + 1, 255)
            self.order_faults += faults
            self.batches += 1


def produce(batcher: Batcher, watchers: list[Watcher], number: int, count: int) -> None:
    rng = random.Random(number)
    first_id = number * (SOAK_OPS // PRODUCERS)
    for sequence in range(count):
        watcher = watchers[rng.randrange(len(watchers))]
        operation = Operation(
            watcher,
            rng.randint(1, 20),
            payload=first_id + sequence,
            batchable=rng.random() < 0.8,
        )
        batcher.put(operation)


@pytest.mark.slow
def test_soak_every_operation_accounted() -> None:
    per_producer = SOAK_OPS // PRODUCERS
    total = per_producer * PRODUCERS
    # Payloads are producer * per_producer + sequence, so they index
    # tally.deliveries and Tally decodes them back.
    tally = Tally(total, per_producer)
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        started = time.monotonic()

        watchers = [
            Watcher(tally.callback, max_batch_size=MAX_BATCH_SIZES[i % 10])
            for i in range(WATCHERS)
        ]
        batcher = Batcher(
            ProvisionedResource(SOAK_CAPACITY),
            flush_interval=0.05,
            buffer_size=20_000,
            max_workers=8,
        )
        prefix = f"batcher-{batcher._number}-"
        batcher.start()
        producers = [
            threading.Thread(
                target=produce,
                args=(batcher, watchers, n, per_producer),
                name=f"soak-producer-{n}",
            )
            for n in range(PRODUCERS)
        ]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join(600)
        assert [t.name for t in producers if t.is_alive()] == []
        returned = batcher.stop(120)
        elapsed = time.monotonic() - started

        peak = tracemalloc.get_traced_memory()[1] - baseline
        held_by_stopped = tracemalloc.get_traced_memory()[0] - baseline
        needs_capacity = batcher.needs_capacity
        inflight = batcher.inflight
        left_threads = [
            t.name for t in threading.enumerate() if t.name.startswith(prefix)
        ]
        del batcher, watchers, producers
        gc.collect()
        after_release = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()

    returned_ids = [op.payload for op in returned]
    for payload in returned_ids:
        tally.deliveries[payload] += 1
    delivered = sum(1 for n in tally.deliveries if n)
    duplicated = sum(1 for n in tally.deliveries if n > 1)
    lost = sum(1 for n in tally.deliveries if n == 0)
    figures = {
        "operations_put": total,
        "delivered": total - lost - len(returned_ids),
        "returned": len(returned_ids),
        "lost": lost,
        "duplicated": duplicated,
        "batches": tally.batches,
        "seconds": round(elapsed, 2),
        "capacity_per_second": SOAK_CAPACITY,
        "peak_traced_bytes": peak,
        "bytes_held_by_stopped_batcher": held_by_stopped,
        "bytes_after_release": after_release,
    }
    report = os.environ.get("BATCHER_SOAK_REPORT")
    if report:
        with open(report, "w", encoding="utf-8") as file:
            json.dump(figures, file, indent=2)

    assert lost == 0
    assert duplicated == 0
    assert delivered == total
    assert tally.order_faults == 0
    assert needs_capacity == 0
    assert inflight == 0
    assert left_threads == []
    assert after_release < MEMORY_MARGIN_BYTES
