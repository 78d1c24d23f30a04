"""SharedResource against Azurite: provisioning, ramp, fair share, and
several processes that share one container, with and without an outage.

Each process records the interval during which it counted each partition
(the ``released`` events carry them, and ``stop()`` releases every lease),
so the test can check that no partition was ever counted by two processes
at once. ``time.monotonic`` is one clock for all processes on a machine.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import pytest

from batcher import (
    AzureBlobLeaseManager,
    Batcher,
    BatcherStoppedError,
    Event,
    Operation,
    SharedResource,
    Watcher,
    events,
)
from batcher._azurite import Azurite
from batcher._shared import LeaseHold

from ._helpers import Recorder

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

RESERVED = 500
FACTOR = 1000


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def make_manager(
    azurite: Azurite, container_name: str
) -> Iterator[Callable[[], AzureBlobLeaseManager]]:
    managers: list[AzureBlobLeaseManager] = []

    def make() -> AzureBlobLeaseManager:
        manager = AzureBlobLeaseManager.from_connection_string(
            azurite.connection_string, container_name
        )
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.close()


def test_provision_new_then_existing_container(
    make_manager: Callable[[], AzureBlobLeaseManager],
) -> None:
    first = SharedResource(RESERVED, 3 * FACTOR, make_manager(), FACTOR)
    recorder = Recorder(first.events)
    first.start()
    first.stop()
    assert [(e.name, e.val) for e in recorder.events] == [
        ("provision-start", 3),
        ("created-container", 0),
        ("created-blob", 0),
        ("created-blob", 1),
        ("created-blob", 2),
        ("provision-done", 3),
        ("capacity", RESERVED),
        ("shutdown", 0),
    ]

    second = SharedResource(RESERVED, 4 * FACTOR, make_manager(), FACTOR)
    recorder = Recorder(second.events)
    second.start()
    second.stop()
    assert [(e.name, e.val) for e in recorder.events] == [
        ("provision-start", 4),
        ("verified-container", 0),
        ("verified-blob", 0),
        ("verified-blob", 1),
        ("verified-blob", 2),
        ("created-blob", 3),
        ("provision-done", 4),
        ("capacity", RESERVED),
        ("shutdown", 0),
    ]


def test_ramp_from_idle_takes_all_partitions(
    make_manager: Callable[[], AzureBlobLeaseManager],
) -> None:
    resource = SharedResource(RESERVED, 18 * FACTOR, make_manager(), FACTOR)
    resource.start()
    try:
        started = time.monotonic()
        resource.give_me(1_000_000)
        ramped = wait_for(lambda: resource.capacity == RESERVED + 18 * FACTOR, 5.0)
        elapsed = time.monotonic() - started
        assert ramped, f"capacity {resource.capacity} after {elapsed:.3f} s"
        # One listing, then one acquire per partition.
        assert resource.storage_requests == 19
    finally:
        resource.stop()


def test_second_instance_gets_fair_share(
    make_manager: Callable[[], AzureBlobLeaseManager],
) -> None:
    partitions = 18
    greedy = SharedResource(0, partitions * FACTOR, make_manager(), FACTOR)
    waiter = SharedResource(0, partitions * FACTOR, make_manager(), FACTOR)
    greedy.start()
    waiter.start()
    try:
        greedy.give_me(1_000_000)
        assert wait_for(lambda: len(greedy.holds()) == partitions, 5.0)

        # Both call give_me every 0.1 s, as a Batcher's capacity thread does.
        samples: list[tuple[float, int, int]] = []
        started = time.monotonic()
        while time.monotonic() - started < 20.0:
            greedy.give_me(1_000_000)
            waiter.give_me(1_000_000)
            held = (len(greedy.holds()), len(waiter.holds()))
            assert sum(held) <= partitions
            samples.append((time.monotonic() - started, *held))
            time.sleep(0.1)
    finally:
        greedy.stop()
        waiter.stop()
    late = [waiter_held for t, _, waiter_held in samples if t >= 10.0]
    average = sum(late) / len(late)
    fair_share = partitions / 2
    assert average >= fair_share / 2, samples


# Several processes on one container.


def run_instance(
    connection_string: str,
    container: str,
    stop: ProcessEvent,
    results: Queue[dict[str, Any]],
) -> None:
    """Saturate a Batcher on a SharedResource until ``stop`` is set, then
    report counted intervals, capacity samples and operation counts."""
    manager = AzureBlobLeaseManager.from_connection_string(
        connection_string, container, timeout=2.0
    )
    shared = SharedResource(RESERVED, 10 * FACTOR, manager, FACTOR)
    intervals: list[tuple[int, float, float]] = []
    errors: list[str] = []

    def record(event: Event) -> None:
        if event.name == events.RELEASED and isinstance(event.metadata, LeaseHold):
            hold = event.metadata
            intervals.append((hold.partition, hold.counted_from, hold.counted_until))
        elif event.name == events.ERROR:
            errors.append(event.msg or "")

    shared.events.subscribe(record)
    done_lock = threading.Lock()
    done = [0]

    def callback(batch: list[Operation]) -> None:
        with done_lock:
            done[0] += len(batch)

    watcher = Watcher(callback)
    batcher = Batcher(shared, buffer_size=200, manage_rate_limiter=False)
    shared.start()
    batcher.start()
    put = [0]

    def produce() -> None:
        while not stop.is_set():
            try:
                batcher.put(Operation(watcher, 100))
            except BatcherStoppedError:
                return
            put[0] += 1

    producer = threading.Thread(target=produce, name="test-producer")
    producer.start()
    results.put({"ready": True})
    samples: list[tuple[float, int]] = []
    while not stop.wait(0.05):
        samples.append((time.monotonic(), shared.capacity))
    unprocessed = batcher.stop(timeout=2.0)
    producer.join()
    shared.stop()
    manager.close()
    results.put(
        {
            "intervals": intervals,
            "samples": samples,
            "put": put[0],
            "done": done[0],
            "unprocessed": len(unprocessed),
            "errors": errors,
            "requests": shared.storage_requests,
        }
    )


def run_processes(
    azurite: Azurite, container: str, schedule: Callable[[], None]
) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results: Queue[dict[str, Any]] = context.Queue()
    processes = [
        context.Process(
            target=run_instance,
            args=(azurite.connection_string, container, stop, results),
        )
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            assert results.get(timeout=60)["ready"]
        schedule()
    finally:
        stop.set()
    reports = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(10)
        assert process.exitcode == 0
    return reports


def assert_no_overlap(reports: list[dict[str, Any]], partitions: int) -> None:
    by_partition: dict[int, list[tuple[float, float, int]]] = {}
    for number, report in enumerate(reports):
        for partition, start, end in report["intervals"]:
            assert 0 <= partition < partitions
            assert start <= end
            by_partition.setdefault(partition, []).append((start, end, number))
    for partition, intervals in by_partition.items():
        intervals.sort()
        for (_, end, first), (start, _, second) in zip(
            intervals, intervals[1:], strict=False
        ):
            assert end <= start, (partition, first, second, end, start)

    # Sweep every interval edge: counted partitions never exceed those that exist.
    edges = sorted(
        [(start, 1) for ivs in by_partition.values() for start, _, _ in ivs]
        + [(end, -1) for ivs in by_partition.values() for _, end, _ in ivs],
        key=lambda edge: (edge[0], edge[1]),
    )
    counted = 0
    for _, change in edges:
        counted += change
        assert counted <= partitions


def assert_no_operation_lost(reports: list[dict[str, Any]]) -> None:
    for report in reports:
        assert report["put"] > 0
        assert report["done"] + report["unprocessed"] == report["put"]


def test_three_processes_never_count_a_partition_twice(
    azurite: Azurite, container_name: str
) -> None:
    reports = run_processes(azurite, container_name, lambda: time.sleep(8.0))
    assert_no_overlap(reports, 10)
    assert_no_operation_lost(reports)
    # Saturated together, the processes count every partition most of the time.
    assert all(report["intervals"] for report in reports)


def test_three_processes_survive_storage_outage(
    azurite_factory: Callable[..., Azurite], container_name: str
) -> None:
    storage = azurite_factory()
    moments: dict[str, float] = {}

    def outage() -> None:
        # Azurite saves its state every 5 s, so by now the container and
        # blobs survive the kill.
        time.sleep(6.0)
        moments["killed"] = time.monotonic()
        storage.kill()
        # Every hold ends within lease_duration - SAFETY_MARGIN = 14 s of
        # its last renewal, all of which came before the kill.
        time.sleep(15.0)
        moments["restarted"] = time.monotonic()
        storage.start()
        time.sleep(5.0)

    reports = run_processes(storage, container_name, outage)
    assert_no_overlap(reports, 10)
    assert_no_operation_lost(reports)
    for report in reports:
        samples = report["samples"]
        down = [
            capacity
            for t, capacity in samples
            if moments["killed"] + 14.0 <= t < moments["restarted"]
        ]
        assert down
        assert set(down) == {RESERVED}
        assert min(capacity for _, capacity in samples) >= RESERVED
        assert report["errors"]
    # Once storage is back, the processes lease every partition again.
    leased_again = {
        partition
        for report in reports
        for partition, start, _ in report["intervals"]
        if start >= moments["restarted"]
    }
    assert leased_again == set(range(10))
