"""Shared capacity on Azurite: ramp time, utilisation and storage requests.

Beside each figure is the same figure for the lease loop of the Go library
mspnp/go-batcher, emulated here on the same Azurite. Every random interval
below 0.5 s, that loop tries one random partition that the instance does
not hold, with a 15-second lease that it never renews nor releases. Picking
only among partitions not held is the kinder reading of that loop, because
it never spends a request on a partition the instance already has.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batcher import (
    AzureBlobLeaseManager,
    Batcher,
    BatcherStoppedError,
    Event,
    EventBus,
    Operation,
    SharedResource,
    Watcher,
    events,
)
from batcher._azurite import Azurite

from ._common import Figures, Settings, log, max_window_cost, median_figures

__all__ = ["bench_scale_partitions", "bench_shared"]

FACTOR = 1_000
RESERVED = 1_000
SHARED = 18_000
INSTANCES = 3
GO_LEASE_SECONDS = 15.0
GO_MAX_INTERVAL = 0.5
MIN_COST = 1
MAX_COST = 250


def _ignore(batch: list[Operation]) -> None:
    """Watcher callback that does nothing."""


def _container() -> str:
    """Return a fresh container name, so every run starts with no lease held."""
    return f"bench-{uuid.uuid4().hex[:16]}"


def _provision(conn_str: str, container: str, partitions: int) -> None:
    manager = AzureBlobLeaseManager.from_connection_string(conn_str, container)
    try:
        manager.provision(partitions, EventBus())
    finally:
        manager.close()


class _HeldCounter:
    """Track the partitions an instance holds and signal when it holds ``goal``."""

    def __init__(self, goal: int) -> None:
        # Guards held; events arrive on the resource's control thread.
        self._held_lock = threading.Lock()
        self.held: set[int] = set()
        self.goal = goal
        self.reached = threading.Event()
        self.reached_at = 0.0

    def on_event(self, event: Event) -> None:
        now = time.monotonic()
        with self._held_lock:
            if event.name == events.ALLOCATED:
                self.held.add(event.val)
            elif event.name == events.RELEASED:
                self.held.discard(event.val)
            else:
                return
            full = len(self.held) >= self.goal and not self.reached.is_set()
        if full:
            self.reached_at = now
            self.reached.set()


def _ramp_ours(conn_str: str, partitions: int) -> float:
    """Return seconds from the first put() on an idle instance to holding
    every partition (the last ``allocated`` event)."""
    container = _container()
    _provision(conn_str, container, partitions)
    manager = AzureBlobLeaseManager.from_connection_string(conn_str, container)
    resource = SharedResource(RESERVED, partitions * FACTOR, manager, factor=FACTOR)
    counter = _HeldCounter(partitions)
    resource.events.subscribe(counter.on_event)
    batcher = Batcher(resource)
    watcher = Watcher(_ignore, max_batch_size=100)
    try:
        batcher.start()
        # Let the instance settle idle, so the ramp starts from rest.
        time.sleep(0.5)
        start = time.monotonic()
        for _ in range(partitions + 10):
            batcher.put(Operation(watcher, FACTOR, None, True))
        if not counter.reached.wait(60):
            raise TimeoutError(
                f"instance held {len(counter.held)} of {partitions} partitions "
                "after 60 s"
            )
        return counter.reached_at - start
    finally:
        batcher.stop(timeout=0)
        manager.close()


@dataclass
class _GoStyleInstance:
    """The Go library's lease loop, emulated for comparison."""

    manager: AzureBlobLeaseManager
    partitions: int
    rng: random.Random
    lease_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Partition index to the monotonic time its lease ends.
    held: dict[int, float] = field(default_factory=dict)
    reached_all_at: float | None = None

    def held_now(self) -> int:
        now = time.monotonic()
        return sum(1 for end in self.held.values() if end > now)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.rng.uniform(0.0, GO_MAX_INTERVAL)):
            now = time.monotonic()
            for index in [i for i, end in self.held.items() if end <= now]:
                del self.held[index]
            free = [i for i in range(self.partitions) if i not in self.held]
            if not free:
                continue
            index = self.rng.choice(free)
            # The hold is timed from the moment the request is sent.
            sent = time.monotonic()
            if self.manager.acquire(index, self.lease_id, GO_LEASE_SECONDS, "go"):
                self.held[index] = sent + GO_LEASE_SECONDS
                if len(self.held) == self.partitions and self.reached_all_at is None:
                    self.reached_all_at = time.monotonic()


def _ramp_go(conn_str: str, partitions: int, seed: int) -> float:
    container = _container()
    _provision(conn_str, container, partitions)
    manager = AzureBlobLeaseManager.from_connection_string(conn_str, container)
    instance = _GoStyleInstance(manager, partitions, random.Random(seed))
    stop = threading.Event()
    thread = threading.Thread(target=instance.run, args=(stop,), name="bench-go-ramp")
    start = time.monotonic()
    thread.start()
    try:
        deadline = start + 120
        while instance.reached_all_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
        manager.close()
    if instance.reached_all_at is None:
        raise TimeoutError(f"Go-style loop did not hold {partitions} partitions")
    return instance.reached_all_at - start


def _steady_go(conn_str: str, warmup: float, seconds: float, seed: int) -> Figures:
    """Run three Go-style instances that all want every partition.

    Returns storage requests per instance per second and the mean share of
    partitions held, both over ``seconds`` after ``warmup``.
    """
    partitions = SHARED // FACTOR
    container = _container()
    _provision(conn_str, container, partitions)
    managers = [
        AzureBlobLeaseManager.from_connection_string(conn_str, container)
        for _ in range(INSTANCES)
    ]
    instances = [
        _GoStyleInstance(manager, partitions, random.Random(seed + i))
        for i, manager in enumerate(managers)
    ]
    stop = threading.Event()
    threads = [
        threading.Thread(target=inst.run, args=(stop,), name=f"bench-go-{i}")
        for i, inst in enumerate(instances)
    ]
    for thread in threads:
        thread.start()
    try:
        stop.wait(warmup)
        before = [m.request_count for m in managers]
        started = time.monotonic()
        samples: list[int] = []
        while time.monotonic() < started + seconds:
            samples.append(sum(inst.held_now() for inst in instances))
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        after = [m.request_count for m in managers]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for manager in managers:
            manager.close()
    requests = sum(a - b for a, b in zip(after, before, strict=True))
    return {
        "goalgo_storage_requests_per_s": requests / INSTANCES / elapsed,
        "goalgo_partitions_held_fraction": sum(samples) / len(samples) / partitions,
    }


def _instance_main(
    conn_str: str,
    container: str,
    start_at: float,
    warmup: float,
    seconds: float,
    seed: int,
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """Run one saturated instance in a child process and report its figures."""
    manager = AzureBlobLeaseManager.from_connection_string(conn_str, container)
    resource = SharedResource(RESERVED, SHARED, manager, factor=FACTOR)
    batcher = Batcher(resource, emit_batch=True)
    times: list[float] = []
    costs: list[int] = []

    def on_batch(event: Event) -> None:
        if event.name == events.BATCH:
            ops: list[Operation] = event.metadata
            times.append(time.monotonic())
            costs.append(sum(op.cost for op in ops))

    batcher.events.subscribe(on_batch)
    watchers = [Watcher(_ignore, max_batch_size=100) for _ in range(10)]
    stop = threading.Event()

    def produce() -> None:
        rng = random.Random(seed)
        n = 0
        while not stop.is_set():
            op = Operation(
                watchers[n % 10], rng.randint(MIN_COST, MAX_COST), None, True
            )
            try:
                batcher.put(op)
            except BatcherStoppedError:
                return
            n += 1

    batcher.start()
    time.sleep(max(start_at - time.monotonic(), 0.0))
    producer = threading.Thread(target=produce, name="bench-producer")
    producer.start()
    time.sleep(max(start_at + warmup - time.monotonic(), 0.0))
    requests_before = manager.request_count
    measured_from = time.monotonic()
    capacity_samples = []
    while time.monotonic() < start_at + warmup + seconds:
        capacity_samples.append(resource.capacity)
        time.sleep(0.1)
    requests_after = manager.request_count
    measured_to = time.monotonic()
    stop.set()
    batcher.stop(timeout=0)
    producer.join()
    manager.close()
    results.put(
        {
            "times": times,
            "costs": costs,
            "requests": requests_after - requests_before,
            "elapsed": measured_to - measured_from,
            "mean_capacity": sum(capacity_samples) / len(capacity_samples),
        }
    )


def _steady_ours(conn_str: str, warmup: float, seconds: float, seed: int) -> Figures:
    """Run three saturated instances in child processes; return the figures."""
    container = _container()
    _provision(conn_str, container, SHARED // FACTOR)
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    # The children need a few seconds to import; they all start demand at
    # the same moment of the shared monotonic clock.
    start_at = time.monotonic() + 4.0
    processes = [
        context.Process(
            target=_instance_main,
            args=(conn_str, container, start_at, warmup, seconds, seed + i, results),
            name=f"bench-instance-{i}",
        )
        for i in range(INSTANCES)
    ]
    for process in processes:
        process.start()
    reports = []
    try:
        for _ in processes:
            reports.append(
                results.get(timeout=start_at - time.monotonic() + warmup + seconds + 60)
            )
    except queue.Empty:
        raise TimeoutError("a benchmark instance did not report") from None
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()

    window_start = start_at + warmup
    window_end = window_start + seconds
    pairs = sorted(
        (t, c)
        for report in reports
        for t, c in zip(report["times"], report["costs"], strict=True)
    )
    times = [t for t, _ in pairs]
    costs = [c for _, c in pairs]
    total_capacity = SHARED + INSTANCES * RESERVED
    delivered = sum(c for t, c in pairs if window_start <= t < window_end)
    in_window = [(t, c) for t, c in pairs if window_start <= t < window_end]
    return {
        "shared_utilisation": delivered / (total_capacity * seconds),
        "shared_max_window_ratio": max_window_cost(
            [t for t, _ in in_window], [c for _, c in in_window], 1.0
        )
        / total_capacity,
        "shared_max_window_ratio_whole_run": max_window_cost(times, costs, 1.0)
        / total_capacity,
        "storage_requests_per_s": sum(r["requests"] / r["elapsed"] for r in reports)
        / INSTANCES,
        "shared_capacity_held_fraction": sum(r["mean_capacity"] for r in reports)
        / total_capacity,
    }


def _with_azurite(run: Callable[[str], Figures]) -> Figures:
    with Azurite() as azurite:
        return run(azurite.connection_string)


def bench_shared(settings: Settings) -> Figures:
    """Ramp, utilisation and storage requests of 3 instances, against the Go loop."""
    warmup = settings.pick(6.0, 10.0)
    seconds = settings.pick(6.0, 20.0)
    partitions = SHARED // FACTOR

    def run(conn_str: str) -> Figures:
        seeds = iter(range(1000, 2000))

        def measure() -> Figures:
            seed = next(seeds)
            figures: Figures = {
                "ramp_s": _ramp_ours(conn_str, partitions),
                "goalgo_ramp_s": _ramp_go(conn_str, partitions, seed),
            }
            log(f"  ramp: {figures}")
            steady = _steady_ours(conn_str, warmup, seconds, seed)
            log(f"  steady: {steady}")
            go = _steady_go(conn_str, warmup, seconds, seed)
            log(f"  goalgo steady: {go}")
            return figures | steady | go

        return median_figures(settings.repeats, measure)

    return _with_azurite(run)


def bench_scale_partitions(settings: Settings) -> Figures:
    """Ramp with 100 partitions over ramp with 18, factor 1,000."""

    def run(conn_str: str) -> Figures:
        def measure() -> Figures:
            few = _ramp_ours(conn_str, SHARED // FACTOR)
            many = _ramp_ours(conn_str, 100)
            figures = {
                "ramp_100_partitions_s": many,
                "scale_partitions_ratio": many / few,
            }
            log(f"  scale_partitions: {figures}")
            return figures

        return median_figures(settings.repeats, measure)

    return _with_azurite(run)
