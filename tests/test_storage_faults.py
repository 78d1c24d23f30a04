"""SharedResource and AzureBlobLeaseManager against a real Azurite that goes
away, answers slowly, has a lease stolen, or rejects the credentials.

Every test runs real threads against a real Azurite, so bounds on time are
generous; the measured figures are printed (run with ``-s`` to see them).
Each SharedResource records the interval during which it counted each
partition: the ``released`` event carries it, and ``stop()`` releases every
lease, so the union of intervals shows whether two instances ever counted
one partition at once.
"""

from __future__ import annotations

import base64
import itertools
import logging
import math
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import pytest
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.storage.blob import (
    BlobLeaseClient,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from batcher import (
    AzureBlobLeaseManager,
    Batcher,
    BatcherStoppedError,
    Event,
    EventBus,
    LeaseStoreError,
    Operation,
    SharedResource,
    Watcher,
    events,
    log_events,
)
from batcher._azurite import Azurite
from batcher._shared import ERROR_SUMMARY_INTERVAL, MIN_HOLD, SAFETY_MARGIN, LeaseHold

from ._proxy import DelayProxy

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

# The measured figures go here; see them with --log-cli-level=INFO.
logger = logging.getLogger(__name__)

RESERVED = 500
FACTOR = 1000
LEASE_DURATION = 15.0
HOLD = LEASE_DURATION - SAFETY_MARGIN
RENEW_PERIOD = LEASE_DURATION / 2
# A key of the right shape that Azurite does not accept.
WRONG_KEY = base64.b64encode(
    b"wrong key for the development account, 64 bytes.."
).decode()


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def container_exists(azurite: Azurite, container: str) -> bool:
    with ContainerClient.from_connection_string(
        azurite.connection_string, container
    ) as client:
        return bool(client.exists())


class TimedRecorder:
    """Collect events from several buses with the monotonic time of each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[float, str, Event]] = []

    def attach(self, bus: EventBus, source: str) -> None:
        def listener(event: Event) -> None:
            with self._lock:
                self.events.append((time.monotonic(), source, event))

        bus.subscribe(listener)

    def of(self, name: str, source: str | None = None) -> list[tuple[float, Event]]:
        with self._lock:
            return [
                (t, e)
                for t, s, e in self.events
                if e.name == name and (source is None or s == source)
            ]

    def intervals(self, source: str) -> list[tuple[int, float, float]]:
        """Counted intervals that ``source`` reported in its ``released`` events."""
        return [
            (hold.partition, hold.counted_from, hold.counted_until)
            for _, event in self.of(events.RELEASED, source)
            if isinstance(hold := event.metadata, LeaseHold)
        ]


class TimedLogHandler(logging.Handler):
    """Keep every record with the monotonic time it was handled."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, logging.LogRecord]] = []
        self._records_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._records_lock:
            self.records.append((time.monotonic(), record))

    def snapshot(self) -> list[tuple[float, logging.LogRecord]]:
        with self._records_lock:
            return list(self.records)


@pytest.fixture
def batcher_log() -> Iterator[TimedLogHandler]:
    """Records of the ``batcher`` loggers at INFO and above."""
    handler = TimedLogHandler()
    logger = logging.getLogger("batcher")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def assert_no_overlap(
    intervals_by_source: dict[str, list[tuple[int, float, float]]],
) -> None:
    """Fail if two counted intervals of one partition overlap."""
    by_partition: dict[int, list[tuple[float, float, str]]] = {}
    for source, intervals in intervals_by_source.items():
        for partition, start, end in intervals:
            assert start <= end, (source, partition, start, end)
            by_partition.setdefault(partition, []).append((start, end, source))
    for partition, spans in by_partition.items():
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            assert end <= start, (
                f"partition {partition} counted by {first} until {end:.3f} and "
                f"by {second} from {start:.3f}"
            )


# A saturated Batcher on a SharedResource, with everything it delivers.


@dataclass
class Instance:
    """A Batcher on a SharedResource, saturated by a producer thread."""

    name: str
    manager: AzureBlobLeaseManager
    shared: SharedResource
    batcher: Batcher
    cost: int
    delivered: list[tuple[float, int]] = field(default_factory=list)
    put: list[int] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _producer: threading.Thread | None = None

    def deliver(self, batch: list[Operation]) -> None:
        now = time.monotonic()
        with self._lock:
            self.delivered.extend((now, op.payload) for op in batch)

    def start(self) -> None:
        self.batcher.start()
        watcher = Watcher(self.deliver, max_batch_size=50)

        def produce() -> None:
            for number in itertools.count():
                try:
                    self.batcher.put(Operation(watcher, self.cost, number, True))
                except BatcherStoppedError:
                    return
                self.put.append(number)

        self._producer = threading.Thread(
            target=produce, name=f"test-produce-{self.name}"
        )
        self._producer.start()

    def sample(self) -> None:
        self.samples.append(
            (time.monotonic(), self.shared.capacity, len(self.shared.holds()))
        )

    def stop(self) -> None:
        self.returned = [op.payload for op in self.batcher.stop(timeout=2.0)]
        if self._producer is not None:
            self._producer.join(10)
        self.manager.close()

    def delivered_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for t, _ in self.delivered if start <= t < end)


def make_instance(
    name: str, connection_string: str, container: str, shared_capacity: int, cost: int
) -> Instance:
    manager = AzureBlobLeaseManager.from_connection_string(
        connection_string, container, timeout=1.0
    )
    shared = SharedResource(RESERVED, shared_capacity, manager, FACTOR, owner=name)
    batcher = Batcher(shared, buffer_size=200, flush_interval=0.05)
    return Instance(name, manager, shared, batcher, cost)


# 1. Storage goes away and comes back.


def test_storage_outage_reserved_flows_shared_returns(
    azurite_factory: Callable[..., Azurite],
    container_name: str,
    batcher_log: TimedLogHandler,
) -> None:
    storage = azurite_factory()
    partitions = 4
    cost = 10
    recorder = TimedRecorder()
    instances = [
        make_instance(
            name, storage.connection_string, container_name, partitions * FACTOR, cost
        )
        for name in ("first", "second")
    ]
    for instance in instances:
        recorder.attach(instance.shared.events, instance.name)
        recorder.attach(instance.batcher.events, f"{instance.name}-batcher")
        instance.start()

    sampling = threading.Event()

    def sample_all() -> None:
        while not sampling.wait(0.05):
            for instance in instances:
                instance.sample()

    sampler = threading.Thread(target=sample_all, name="test-sampler")
    sampler.start()
    moments: dict[str, float] = {}
    try:

        def all_counted() -> bool:
            return sum(len(i.shared.holds()) for i in instances) == partitions

        assert wait_for(all_counted, 15.0)
        time.sleep(2.0)

        hold_ends = [
            hold.counted_until for i in instances for hold in i.shared.holds().values()
        ]
        errors_before = [i.shared.storage_errors for i in instances]
        moments["killed"] = time.monotonic()
        storage.kill()
        # Every hold was timed from a request sent before the kill.
        moments["holds_end"] = max(hold_ends)
        assert moments["holds_end"] <= moments["killed"] + HOLD
        # Reserved capacity alone for a while, to measure its rate.
        time.sleep(max(moments["holds_end"] + 4.0 - time.monotonic(), 0.0))
        moments["restarting"] = time.monotonic()
        storage.start()
        moments["restarted"] = time.monotonic()
        errors_while_down = [
            i.shared.storage_errors - before
            for i, before in zip(instances, errors_before, strict=True)
        ]

        def full_again() -> bool:
            return all_counted()

        assert wait_for(full_again, 20.0), "shared capacity did not return"
        moments["returned"] = time.monotonic()
        time.sleep(1.0)
    finally:
        for instance in instances:
            instance.stop()
        sampling.set()
        sampler.join()

    killed, holds_end = moments["killed"], moments["holds_end"]
    restarting, restarted = moments["restarting"], moments["restarted"]
    return_time = moments["returned"] - restarted

    for instance in instances:
        # While storage is down, capacity is reserved capacity alone as soon
        # as the last hold ends, and never less.
        down = [c for t, c, _ in instance.samples if holds_end <= t < restarting]
        assert down, instance.name
        assert set(down) == {RESERVED}, instance.name
        assert min(c for _, c, _ in instance.samples) >= RESERVED

        # Reserved capacity keeps flowing at about its rate. The first second
        # after the drop is left out: the cost raised in the last second
        # still counts against the one-second window.
        window = restarting - holds_end - 1.0
        delivered = instance.delivered_between(holds_end + 1.0, restarting)
        expected = RESERVED / cost * window
        assert expected * 0.5 <= delivered <= expected * 1.5 + 2 * RESERVED / cost, (
            instance.name,
            delivered,
            expected,
        )

        # Errors while down are summarised, not reported per attempt.
        down_errors = [
            t
            for t, _ in recorder.of(events.ERROR, instance.name)
            if killed <= t < restarted
        ]
        down_seconds = restarted - killed
        limit = 2 + down_seconds / ERROR_SUMMARY_INTERVAL
        assert 1 <= len(down_errors) <= limit, (instance.name, len(down_errors))

    assert min(errors_while_down) > 5, errors_while_down
    warning_lines = [
        record
        for t, record in batcher_log.snapshot()
        if killed <= t < restarted
        and record.levelno >= logging.WARNING
        and record.name == "batcher._shared"
    ]
    assert len(warning_lines) <= 2 * (2 + (restarted - killed) / ERROR_SUMMARY_INTERVAL)

    # Shared capacity returns soon after storage does.
    assert return_time <= 15.0

    # Nothing lost, nothing delivered twice.
    for instance in instances:
        delivered_ids = [payload for _, payload in instance.delivered]
        assert len(delivered_ids) == len(set(delivered_ids)), instance.name
        assert not set(delivered_ids) & set(instance.returned), instance.name
        assert sorted(delivered_ids + instance.returned) == sorted(instance.put)

    assert_no_overlap({i.name: recorder.intervals(i.name) for i in instances})

    total_errors = sum(len(recorder.of(events.ERROR, i.name)) for i in instances)
    logger.info(
        "%s",
        f"outage: holds ended {holds_end - killed:.2f} s after the kill; storage "
        f"down {restarted - killed:.2f} s (start() took {restarted - restarting:.2f} s); "
        f"shared capacity back {return_time:.2f} s after start() returned; "
        f"storage errors while down {errors_while_down}, error events "
        f"{total_errors} in total, {total_errors / (restarted - killed):.2f}/s; "
        f"warning lines while down {len(warning_lines)}; "
        + "; ".join(
            f"{i.name}: put {len(i.put)} delivered {len(i.delivered)} "
            f"returned {len(i.returned)} lost "
            f"{len(i.put) - len(i.delivered) - len(i.returned)}, reserved-only "
            f"{i.delivered_between(holds_end + 1, restarting) / (restarting - holds_end - 1):.1f} "
            f"ops/s (expected {RESERVED / cost:.0f})"
            for i in instances
        ),
    )


# SharedResources driven by give_me() alone, as a Batcher's capacity thread does.


class Demand:
    """Call ``give_me`` on each SharedResource every 0.1 s with its target."""

    def __init__(self, targets: dict[SharedResource, int]) -> None:
        self.targets = targets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-demand")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for shared, target in list(self.targets.items()):
                shared.give_me(target)

    def set(self, shared: SharedResource, target: int) -> None:
        self.targets[shared] = target
        shared.give_me(target)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def lease_states(azurite: Azurite, container: str) -> dict[str, tuple[str, str | None]]:
    """Return each blob's lease state and recorded owner, straight from storage."""
    with ContainerClient.from_connection_string(
        azurite.connection_string, container
    ) as client:
        return {
            blob.name: (blob.lease.state, (blob.metadata or {}).get("owner"))
            for blob in client.list_blobs(include=["metadata"])
        }


def after_restart(
    spans: list[tuple[int, float, float]], restarted: float
) -> list[tuple[int, float, float]]:
    """Return the spans that end after ``restarted``, timed from it."""
    return [
        (partition, round(start - restarted, 2), round(end - restarted, 2))
        for partition, start, end in spans
        if end > restarted
    ]


def test_storage_rollback_double_count_ends_at_renewal(
    azurite_factory: Callable[..., Azurite], container_name: str
) -> None:
    """Azurite saves its state every 5 s, so a kill forgets the last seconds.

    ``first`` holds every partition long enough for that to be saved, then
    gives them up and ``second`` takes them; storage is killed at once and
    restarted, so it comes back without ``second``'s leases and ``first``
    takes them again. Storage that loses a confirmed lease breaks the
    guarantee that no partition is counted twice, and no client can close
    that gap; what the library bounds is how long it lasts: ``second``
    finds out at its next renewal at the latest.
    """
    storage = azurite_factory()
    partitions = 3
    recorder = TimedRecorder()
    managers = [
        AzureBlobLeaseManager.from_connection_string(
            storage.connection_string, container_name, timeout=1.0
        )
        for _ in range(2)
    ]
    first, second = (
        SharedResource(
            0, partitions * FACTOR, manager, FACTOR, owner=name, release_delay=0
        )
        for name, manager in zip(("first", "second"), managers, strict=True)
    )
    recorder.attach(first.events, "first")
    recorder.attach(second.events, "second")
    first.start()
    second.start()
    demand = Demand({first: partitions * FACTOR, second: 0})
    states_after: dict[str, tuple[str, str | None]] = {}
    try:
        assert wait_for(lambda: len(first.holds()) == partitions, 10.0)
        # Longer than Azurite's 5-second save interval.
        time.sleep(6.0)

        demand.set(first, 0)
        assert wait_for(lambda: not first.holds(), 5.0)
        demand.set(second, partitions * FACTOR)
        assert wait_for(lambda: len(second.holds()) == partitions, 5.0)
        killed = time.monotonic()
        storage.kill()
        storage.start()
        restarted = time.monotonic()
        states_after = lease_states(storage, container_name)

        demand.set(first, partitions * FACTOR)
        # Long enough for second's next renewal to find out what storage reports.
        time.sleep(RENEW_PERIOD + 2.0)
    finally:
        demand.close()
        first.stop()
        second.stop()
        for manager in managers:
            manager.close()

    intervals = {name: recorder.intervals(name) for name in ("first", "second")}
    logger.info(
        "%s",
        f"rollback: storage down {restarted - killed:.2f} s; lease states after "
        f"the restart {states_after}; counted after the restart: "
        + "; ".join(
            f"{name} {after_restart(spans, restarted)}"
            for name, spans in intervals.items()
        ),
    )
    overlap_ends = overlap_ends_after(intervals, restarted)
    assert all(end <= restarted + RENEW_PERIOD + 1.0 for end in overlap_ends), (
        overlap_ends,
        restarted,
    )
    assert_no_overlap(
        {
            name: [span for span in spans if span[1] > restarted + RENEW_PERIOD + 1.0]
            for name, spans in intervals.items()
        }
    )


def overlap_ends_after(
    intervals_by_source: dict[str, list[tuple[int, float, float]]], since: float
) -> list[float]:
    """Return when each overlap of two sources on one partition ended."""
    ends = []
    items = list(intervals_by_source.items())
    for i, (_, spans) in enumerate(items):
        for _, other in items[i + 1 :]:
            for partition, start, end in spans:
                for other_partition, other_start, other_end in other:
                    if partition != other_partition:
                        continue
                    if max(start, other_start) < min(end, other_end):
                        ends.append(min(end, other_end))
    return [end for end in ends if end > since]


# 2. Storage is slow.


def is_acquire(request_head: bytes) -> bool:
    return b"x-ms-lease-action: acquire" in request_head.lower()


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[DelayProxy]:
    with DelayProxy(azurite.port) as instance:
        yield instance


def proxied_manager(
    azurite: Azurite, proxy: DelayProxy, container: str, timeout: float
) -> AzureBlobLeaseManager:
    return AzureBlobLeaseManager(
        f"http://127.0.0.1:{proxy.port}/{azurite.account_name}",
        container,
        azurite.account_key,
        timeout=timeout,
    )


def test_slow_storage_times_out_then_recovers(
    azurite: Azurite, proxy: DelayProxy, container_name: str
) -> None:
    timeout = 0.5
    manager = proxied_manager(azurite, proxy, container_name, timeout)
    lease_id = str(uuid.uuid4())

    # The lease manager alone: a late answer is a timeout, whatever it says.
    manager.provision(2, EventBus())
    proxy.set(delay=timeout * 3)
    with pytest.raises(LeaseStoreError, match="timed out") as caught:
        manager.acquire(0, lease_id, LEASE_DURATION, "slow")
    assert caught.value.status_code is None
    proxy.set(blackhole=True)
    with pytest.raises(LeaseStoreError, match="timed out"):
        manager.partitions(2)
    proxy.set()
    # The acquire that timed out did reach storage, and the same lease id
    # takes it again as a renewal.
    assert manager.acquire(0, lease_id, LEASE_DURATION, "slow")
    manager.release(0, lease_id)

    # A SharedResource behind the same proxy: nothing counts until answers
    # come in time, and everything counts soon after.
    recorder = TimedRecorder()
    shared = SharedResource(RESERVED, 2 * FACTOR, manager, FACTOR, owner="slow")
    recorder.attach(shared.events, "slow")
    shared.start()
    demand = Demand({shared: 10 * FACTOR})
    capacities: list[int] = []
    try:
        proxy.set(delay=timeout * 3)
        slowed = time.monotonic()
        while time.monotonic() - slowed < 3.0:
            capacities.append(shared.capacity)
            time.sleep(0.02)
        errors_while_slow = shared.storage_errors
        proxy.set(blackhole=True)
        time.sleep(1.5)
        capacities.append(shared.capacity)
        proxy.set()
        fixed = time.monotonic()
        assert wait_for(lambda: shared.capacity == RESERVED + 2 * FACTOR, 10.0)
        recovered = time.monotonic() - fixed
    finally:
        demand.close()
        shared.stop()
        manager.close()

    assert set(capacities) == {RESERVED}
    assert not [e for t, e in recorder.of(events.ALLOCATED) if t < fixed]
    assert errors_while_slow >= 1
    error_events = recorder.of(events.ERROR)
    assert error_events
    assert all("timed out" in (e.msg or "") for _, e in error_events)
    assert len(error_events) <= 2 + (time.monotonic() - slowed) / ERROR_SUMMARY_INTERVAL
    assert proxy.delayed > 0
    assert proxy.dropped > 0
    logger.info(
        "%s",
        f"slow storage: {shared.storage_errors} timed-out requests, "
        f"{len(error_events)} error events; capacity back {recovered:.2f} s after "
        "the delay was removed",
    )


def test_late_acquire_answer_not_counted(
    azurite: Azurite,
    proxy: DelayProxy,
    container_name: str,
    batcher_log: TimedLogHandler,
) -> None:
    """An acquire answered when less than MIN_HOLD of its hold is left is
    released, never counted, even though storage granted it."""
    partitions = 2
    # The first answers to acquires arrive 13.5 s after the request: the
    # hold would end 14 s after it, leaving less than MIN_HOLD.
    late = HOLD - MIN_HOLD + 0.5
    acquires = itertools.count()

    def delay_first_acquires(request_head: bytes) -> float:
        if is_acquire(request_head) and next(acquires) < partitions:
            return late
        return 0.0

    manager = proxied_manager(azurite, proxy, container_name, timeout=late + 10)
    recorder = TimedRecorder()
    shared = SharedResource(
        RESERVED, partitions * FACTOR, manager, FACTOR, owner="late"
    )
    recorder.attach(shared.events, "late")
    shared.start()
    proxy.set(rule=delay_first_acquires)
    demand = Demand({shared: 10 * FACTOR})
    capacities: list[tuple[float, int]] = []
    full = RESERVED + partitions * FACTOR
    try:
        asked = time.monotonic()

        def sample_until_full() -> bool:
            capacities.append((time.monotonic(), shared.capacity))
            return capacities[-1][1] == full

        assert wait_for(sample_until_full, late + 10.0)
    finally:
        demand.close()
        shared.stop()
        manager.close()

    assert proxy.delayed >= partitions
    first_allocated = min(t for t, _ in recorder.of(events.ALLOCATED))
    assert first_allocated >= asked + late - 0.5
    assert {c for t, c in capacities if t < first_allocated} == {RESERVED}
    too_late = [
        (t, record)
        for t, record in batcher_log.snapshot()
        if "too late to count" in record.getMessage()
    ]
    assert len(too_late) >= partitions
    last_late = max(t for t, _ in too_late)
    recovered = capacities[-1][0] - last_late
    # Released at once and acquired again, not left to expire on the server.
    assert recovered <= 5.0
    logger.info(
        "%s",
        f"late acquire: answers {late:.1f} s late, {len(too_late)} leases released "
        f"uncounted; capacity full {recovered:.2f} s after the last late answer",
    )


# 3. Another client breaks and steals a lease.


def test_stolen_lease_dropped_by_next_renewal(
    azurite: Azurite, lease_manager: AzureBlobLeaseManager, container_name: str
) -> None:
    partitions = 3
    recorder = TimedRecorder()
    shared = SharedResource(
        RESERVED, partitions * FACTOR, lease_manager, FACTOR, owner="victim"
    )
    recorder.attach(shared.events, "victim")
    shared.start()
    demand = Demand({shared: 10 * FACTOR})
    samples: list[tuple[float, bool]] = []
    thief_id = str(uuid.uuid4())
    try:
        assert wait_for(lambda: len(shared.holds()) == partitions, 10.0)
        # Wait out part of the renewal period, so the steal is not right
        # before a renewal.
        time.sleep(1.0)
        victim = 1
        hold = shared.holds()[victim]
        renew_due = hold.counted_until - HOLD + RENEW_PERIOD
        with ContainerClient.from_connection_string(
            azurite.connection_string, container_name
        ) as client:
            blob = client.get_blob_client(str(victim))
            BlobLeaseClient(blob).break_lease(lease_break_period=0)
            BlobLeaseClient(blob, lease_id=thief_id).acquire(lease_duration=15)
            stolen = time.monotonic()

            def released() -> bool:
                samples.append((time.monotonic(), victim in shared.holds()))
                return any(e.val == victim for _, e in recorder.of(events.RELEASED))

            assert wait_for(released, RENEW_PERIOD + 5.0)
            detected = min(
                t for t, e in recorder.of(events.RELEASED) if e.val == victim
            )
            time.sleep(1.0)
            samples.append((time.monotonic(), victim in shared.holds()))
            counted_while_stolen = shared.capacity
            BlobLeaseClient(blob, lease_id=thief_id).release()
    finally:
        demand.close()
        shared.stop()

    detection = detected - stolen
    # By its next renewal at the latest, with a generous margin for the request.
    assert detection <= max(renew_due - stolen, 0.0) + 2.0
    assert detection <= RENEW_PERIOD + 2.0
    assert not [t for t, counted in samples if counted and t > detected]
    assert counted_while_stolen == RESERVED + (partitions - 1) * FACTOR
    logger.info(
        "%s",
        f"steal: released {detection:.2f} s after the steal; the renewal was due "
        f"{renew_due - stolen:.2f} s after it; renewal period {RENEW_PERIOD} s",
    )


# 4. Secrets never leave through events, logs, reprs or exceptions.


class AllRecords(logging.Handler):
    """Format every record fully, exception text included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self._formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        self._texts_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = self._formatter.format(record)
        with self._texts_lock:
            self.texts.append(f"{text} args={record.args!r}")


@pytest.fixture
def root_debug_log() -> Iterator[AllRecords]:
    """Every record at DEBUG from every logger, azure and urllib3 included."""
    handler = AllRecords()
    root = logging.getLogger()
    changed = [logging.getLogger(name) for name in ("", "azure", "urllib3", "batcher")]
    old_levels = [logger.level for logger in changed]
    for logger in changed:
        logger.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    for logger, level in zip(changed, old_levels, strict=True):
        logger.setLevel(level)


def exception_texts(error: BaseException) -> list[str]:
    texts = [
        str(error),
        repr(error),
        repr(error.args),
        *traceback.format_exception(error),
    ]
    for linked in (error.__cause__, error.__context__):
        if linked is not None:
            texts += exception_texts(linked)
    return texts


def sas_for(azurite: Azurite, container: str, key: str) -> str:
    return generate_container_sas(
        azurite.account_name,
        container,
        account_key=key,
        permission=ContainerSasPermissions(
            read=True, add=True, create=True, write=True, delete=True, list=True
        ),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )


def build_manager(
    azurite: Azurite, container: str, kind: str
) -> tuple[AzureBlobLeaseManager, list[str]]:
    """Return a manager with the credential ``kind`` and the secrets it carries."""
    url = azurite.account_url
    if kind in ("good-sas", "good-sas-in-url", "good-sas-credential"):
        sas = sas_for(azurite, container, azurite.account_key)
    else:
        sas = sas_for(azurite, container, WRONG_KEY)
    signature = sas.split("sig=")[1].split("&")[0]
    sas_secrets = [sas, signature, unquote(signature)]
    wrong_connection_string = azurite.connection_string.replace(
        azurite.account_key, WRONG_KEY
    )
    key_secrets = [WRONG_KEY, wrong_connection_string, azurite.connection_string]
    if kind == "wrong-key":
        return AzureBlobLeaseManager(url, container, WRONG_KEY), key_secrets
    if kind == "wrong-named-key":
        credential = AzureNamedKeyCredential(azurite.account_name, WRONG_KEY)
        return AzureBlobLeaseManager(url, container, credential), key_secrets
    if kind == "wrong-connection-string":
        manager = AzureBlobLeaseManager.from_connection_string(
            wrong_connection_string, container
        )
        return manager, key_secrets
    if kind in ("bad-sas", "good-sas"):
        return AzureBlobLeaseManager(url, container, sas), sas_secrets
    if kind == "good-sas-in-url":
        return AzureBlobLeaseManager(f"{url}?{sas}", container), sas_secrets
    assert kind == "good-sas-credential"
    return AzureBlobLeaseManager(url, container, AzureSasCredential(sas)), sas_secrets


@pytest.mark.parametrize(
    "kind",
    [
        "wrong-key",
        "wrong-named-key",
        "wrong-connection-string",
        "bad-sas",
        "good-sas",
        "good-sas-in-url",
        "good-sas-credential",
    ],
)
def test_secrets_absent_from_whole_run(
    azurite: Azurite, container_name: str, root_debug_log: AllRecords, kind: str
) -> None:
    good = kind.startswith("good")
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(container_name)
    manager, secrets = build_manager(azurite, container_name, kind)
    secrets.append(azurite.account_key)
    shared = SharedResource(RESERVED, 2 * FACTOR, manager, FACTOR, max_interval=0.1)
    managed = Batcher(
        shared, flush_interval=0.05, emit_batch=True, emit_flush=True, emit_request=True
    )
    received: list[Event] = []
    raised: list[BaseException] = []
    for source in (shared, managed):
        source.events.subscribe(received.append)
        log_events(source, detail_level=logging.DEBUG)
    delivered: list[Operation] = []
    watcher = Watcher(delivered.extend, max_batch_size=10)

    try:
        managed.start()
    except LeaseStoreError as start_error:
        raised.append(start_error)
    if good:
        assert not raised
        batcher = managed
    else:
        assert len(raised) == 1
        assert raised[0].__cause__ is None
        # Provisioning failed, so the lease calls run on a test thread
        # under a Batcher that leaves the rate limiter alone.
        batcher = Batcher(
            shared,
            flush_interval=0.05,
            emit_batch=True,
            emit_flush=True,
            emit_request=True,
            manage_rate_limiter=False,
        )
        batcher.events.subscribe(received.append)
        log_events(batcher, detail_level=logging.DEBUG)
        batcher.start()
    for number in range(40):
        batcher.put(Operation(watcher, 20, number, batchable=True))
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        if not good:
            shared.step()
        time.sleep(0.05)
    reprs = [repr(manager), repr(shared), repr(batcher), repr(managed), str(shared)]
    batcher.stop(timeout=2.0)
    shared.stop()
    manager.close()

    assert delivered
    error_events = [e for e in received if e.name == events.ERROR]
    if good:
        assert any(e.name == events.ALLOCATED for e in received)
        assert not error_events
    else:
        assert error_events
        assert shared.storage_errors > 0
    texts = [*reprs, *root_debug_log.texts, *(repr(e) for e in received)]
    texts += [str(e.msg) for e in received]
    for event in received:
        if isinstance(event.metadata, BaseException):
            texts += exception_texts(event.metadata)
    for exception in raised:
        texts += exception_texts(exception)
    assert root_debug_log.texts
    assert any("urllib3" in text for text in root_debug_log.texts)
    for secret in secrets:
        leaks = [text for text in texts if secret in text]
        assert not leaks, leaks[:3]


# 5. Bad inputs raise before any thread starts or anything is provisioned.


def lease_thread_names() -> list[str]:
    return sorted(
        t.name for t in threading.enumerate() if t.name.startswith("batcher-")
    )


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda s: s.give_me(None), TypeError, "target"),
        (lambda s: s.give_me(math.nan), TypeError, "target"),
        (lambda s: s.give_me(2.5), TypeError, "target"),
        (lambda s: s.give_me(-1), ValueError, "target"),
        (lambda s: s.set_reserved_capacity(-1), ValueError, "reserved_capacity"),
        (lambda s: s.set_reserved_capacity(None), TypeError, "reserved_capacity"),
        (lambda s: s.set_shared_capacity(math.inf), TypeError, "shared_capacity"),
        (lambda s: s.set_shared_capacity(-1), ValueError, "shared_capacity"),
        (lambda s: s.stop(timeout=math.nan), ValueError, "timeout"),
        (lambda s: s.stop(timeout=-1), ValueError, "timeout"),
        (lambda s: s.stop(timeout=None), TypeError, "timeout"),
    ],
)
def test_shared_method_bad_argument_sends_nothing(
    azurite: Azurite,
    lease_manager: AzureBlobLeaseManager,
    container_name: str,
    call: Callable[[SharedResource], object],
    error: type[Exception],
    fragment: str,
) -> None:
    before = lease_thread_names()
    shared = SharedResource(RESERVED, 2 * FACTOR, lease_manager, FACTOR)
    with pytest.raises(error, match=fragment):
        call(shared)
    assert lease_thread_names() == before
    assert lease_manager.request_count == 0
    assert not container_exists(azurite, container_name)


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"reserved_capacity": None}, TypeError, "reserved_capacity"),
        ({"reserved_capacity": math.nan}, TypeError, "reserved_capacity"),
        ({"shared_capacity": None}, TypeError, "shared_capacity"),
        ({"shared_capacity": 10**30 + 0.5}, TypeError, "shared_capacity"),
        ({"factor": -1}, ValueError, "factor"),
        ({"factor": None}, TypeError, "factor"),
        ({"max_interval": -0.5}, ValueError, "max_interval"),
        ({"max_interval": None}, TypeError, "max_interval"),
        ({"lease_duration": math.nan}, ValueError, "lease_duration"),
        ({"lease_duration": math.inf}, ValueError, "lease_duration"),
        ({"lease_duration": None}, TypeError, "lease_duration"),
        ({"lease_duration": -1}, ValueError, "lease_duration"),
        ({"max_parallel": 2.0}, TypeError, "max_parallel"),
        ({"max_parallel": None}, TypeError, "max_parallel"),
        ({"release_delay": math.nan}, ValueError, "release_delay"),
        ({"owner": "a" * 129}, ValueError, "owner"),
        ({"owner": "tab\there"}, ValueError, "owner"),
    ],
)
def test_shared_constructor_bad_value_sends_nothing(
    azurite: Azurite,
    lease_manager: AzureBlobLeaseManager,
    container_name: str,
    options: dict[str, Any],
    error: type[Exception],
    fragment: str,
) -> None:
    before = lease_thread_names()
    settings: dict[str, Any] = {
        "reserved_capacity": RESERVED,
        "shared_capacity": 2 * FACTOR,
        "lease_manager": lease_manager,
        "factor": FACTOR,
    }
    settings.update(options)
    with pytest.raises(error, match=fragment):
        SharedResource(**settings)
    assert lease_thread_names() == before
    assert lease_manager.request_count == 0
    assert not container_exists(azurite, container_name)


def test_shared_huge_values_accepted_without_requests(
    azurite: Azurite, lease_manager: AzureBlobLeaseManager, container_name: str
) -> None:
    shared = SharedResource(10**30, 10**40, lease_manager, 10**35)
    assert shared.partition_count == 500
    shared.give_me(10**50)
    shared.set_shared_capacity(10**60)
    assert shared.partition_count == 500
    assert shared.capacity == 10**30
    assert lease_manager.request_count == 0
    assert not container_exists(azurite, container_name)


def test_shared_huge_max_interval_keeps_control_thread(
    lease_manager: AzureBlobLeaseManager,
) -> None:
    """A max_interval too long for a thread wait is rejected; the maximum
    accepted one leaves the control thread running."""
    with pytest.raises(ValueError, match="max_interval"):
        SharedResource(RESERVED, 2 * FACTOR, lease_manager, FACTOR, max_interval=1e300)
    shared = SharedResource(
        RESERVED, 2 * FACTOR, lease_manager, FACTOR, max_interval=threading.TIMEOUT_MAX
    )
    shared.start()
    try:
        shared.give_me(10 * FACTOR)
        assert wait_for(lambda: shared.capacity == RESERVED + 2 * FACTOR, 5.0)
        assert "batcher-shared-capacity" in lease_thread_names()
    finally:
        shared.stop()


def test_manager_huge_timeout_rejected(azurite: Azurite, container_name: str) -> None:
    """A timeout too long for a thread wait or a socket is rejected."""
    with pytest.raises(ValueError, match="timeout"):
        AzureBlobLeaseManager(
            azurite.account_url, container_name, azurite.account_key, timeout=1e300
        )
    # The maximum timeout accepted still works for a request.
    manager = AzureBlobLeaseManager(
        azurite.account_url,
        container_name,
        azurite.account_key,
        timeout=threading.TIMEOUT_MAX,
    )
    try:
        manager.provision(1, EventBus())
        assert manager.partitions(1)[0].index == 0
    finally:
        manager.close()


@pytest.mark.parametrize(
    "container",
    ["abc\n", "\u0430bc", "ab\u0661", "$root", "ab.c", "a" * 1000, "ABC", "ab--c"],
)
def test_manager_container_azure_rejects(azurite: Azurite, container: str) -> None:
    with pytest.raises(ValueError, match="container"):
        AzureBlobLeaseManager(azurite.account_url, container, azurite.account_key)
    with pytest.raises(ValueError, match="container"):
        AzureBlobLeaseManager.from_connection_string(
            azurite.connection_string, container
        )


@pytest.mark.parametrize(
    "conn_str",
    [
        "AccountName=devstoreaccount1;AccountKey=SECRETKEY0;BlobEndpoint=http://[::1",
        "AccountName=devstoreaccount1;AccountKey=SECRETKEY0;BlobEndpoint=http:///x",
        ";;;AccountKey=SECRETKEY0",
        "AccountName=devstoreaccount1;AccountKey=SECRETKEY0\n;BlobEndpoint=not a url",
    ],
)
def test_manager_malformed_connection_string_hides_key(conn_str: str) -> None:
    with pytest.raises(ValueError, match="conn_str") as caught:
        AzureBlobLeaseManager.from_connection_string(conn_str, "container")
    for text in exception_texts(caught.value):
        assert "SECRETKEY0" not in text


def test_manager_sas_in_endpoint_left_out_of_repr(
    azurite: Azurite, container_name: str
) -> None:
    conn_str = (
        f"BlobEndpoint=http://user:SECRETPASS@127.0.0.1:{azurite.port}/"
        f"{azurite.account_name}?sv=2026-10-06&sig=SECRETSIG;"
        "SharedAccessSignature=sv=2026-10-06&sr=c&sp=rl&sig=SECRETSIG"
    )
    manager = AzureBlobLeaseManager.from_connection_string(conn_str, container_name)
    try:
        for text in (repr(manager), manager.container_url):
            assert "SECRETSIG" not in text
            assert "SECRETPASS" not in text
        with pytest.raises(LeaseStoreError) as caught:
            manager.partitions(1)
        for text in exception_texts(caught.value):
            assert "SECRETSIG" not in text
    finally:
        manager.close()
    assert not container_exists(azurite, container_name)
