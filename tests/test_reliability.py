"""Faults in the core Batcher: callbacks and listeners that raise, hang or
re-enter, stop() racing with producers, and wall-clock jumps.

Every test accounts for each operation: delivered exactly once, returned by
stop(), or rejected at put(). Tests with real threads assert counts with
generous bounds and never a wall-clock duration as a pass condition, except
where a bound many times the expected time separates "flows" from "stuck".
"""

from __future__ import annotations

import collections
import datetime
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time

from batcher import (
    Batcher,
    BatcherStoppedError,
    Event,
    EventBus,
    Operation,
    ProvisionedResource,
    TooManyAttemptsError,
    Watcher,
    events,
)

# Maximum time a test waits for something that should take milliseconds.
PATIENCE = 10.0
# Maximum time a test waits for batches to flow past a fault. They take about
# 0.3 s when they flow, and the wait is the whole run time when they do not.
FLOW_PATIENCE = 3.0


class Recorder:
    """Watcher callback target: records each batch's payloads, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches: list[list[Any]] = []
        self.arrived = threading.Condition(self._lock)

    def __call__(self, ops: list[Operation]) -> None:
        with self._lock:
            self.batches.append([op.payload for op in ops])
            self.arrived.notify_all()

    @property
    def payloads(self) -> list[Any]:
        with self._lock:
            return [p for batch in self.batches for p in batch]

    def wait_for(self, count: int, timeout: float = PATIENCE) -> bool:
        """Wait until at least ``count`` operations arrived."""
        with self._lock:
            return self.arrived.wait_for(
                lambda: sum(len(b) for b in self.batches) >= count, timeout
            )


class FakeLimiter:
    """Rate limiter with fixed capacity that counts give_me() calls."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._events = EventBus()
        self.requests = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def max_capacity(self) -> int:
        return self._capacity

    @property
    def events(self) -> EventBus:
        return self._events

    def give_me(self, target: int) -> None:
        self.requests += 1

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def own_threads(batcher: Batcher) -> list[str]:
    """Names of the live threads that ``batcher`` started."""
    prefix = f"batcher-{batcher._number}-"
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def collect(bus: EventBus, name: str) -> list[Event]:
    """Subscribe a listener that keeps every event called ``name``."""
    found: list[Event] = []

    def listener(event: Event) -> None:
        if event.name == name:
            found.append(event)

    bus.subscribe(listener)
    return found


@pytest.fixture
def batchers() -> Iterator[list[Batcher]]:
    """List to append Batchers to; each is stopped after the test."""
    created: list[Batcher] = []
    yield created
    for batcher in created:
        batcher.stop(1.0)


# Watcher callbacks that raise, hang or re-enter.


def test_raising_callback_other_watchers_delivered(batchers: list[Batcher]) -> None:
    raised: list[list[Any]] = []

    def fail(ops: list[Operation]) -> None:
        raised.append([op.payload for op in ops])
        raise RuntimeError("datastore rejected the batch")

    good = Recorder()
    failing = Watcher(fail, max_batch_size=3)
    working = Watcher(good, max_batch_size=3)
    batcher = Batcher(flush_interval=0.01, max_workers=2)
    batchers.append(batcher)
    errors = collect(batcher.events, events.ERROR)
    batcher.start()

    for i in range(60):
        batcher.put(Operation(failing if i % 2 else working, 1, i, batchable=True))
    assert good.wait_for(30)
    returned = batcher.stop(PATIENCE)

    assert returned == []
    assert sorted(good.payloads) == list(range(0, 60, 2))
    assert sorted(p for batch in raised for p in batch) == list(range(1, 60, 2))
    assert len(errors) == len(raised)
    assert all(isinstance(e.metadata, RuntimeError) for e in errors)
    assert batcher.inflight == 0
    assert batcher.needs_capacity == 0
    assert own_threads(batcher) == []


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_retry_from_callback_counts_attempts(
    max_attempts: int, batchers: list[Batcher]
) -> None:
    """A callback that puts its operations back receives each one
    max_attempts times, with attempt counted from 1. The next put() raises."""
    seen: collections.Counter[tuple[int, int]] = collections.Counter()
    rejected: list[int] = []
    lock = threading.Lock()

    def retry(ops: list[Operation]) -> None:
        for op in ops:
            with lock:
                seen[(op.payload, op.attempt)] += 1
            try:
                batcher.put(op)
            except TooManyAttemptsError as exc:
                assert exc.attempt == op.attempt
                assert exc.max_attempts == max_attempts
                with lock:
                    rejected.append(op.payload)

    watcher = Watcher(retry, max_attempts=max_attempts, max_batch_size=4)
    # A small buffer makes retries block in put() while the buffer is full.
    batcher = Batcher(flush_interval=0.01, buffer_size=8, max_workers=2)
    batchers.append(batcher)
    batcher.start()
    count = 40

    for i in range(count):
        batcher.put(Operation(watcher, 1, i, batchable=True))
    deadline = time.monotonic() + PATIENCE
    while len(rejected) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    returned = batcher.stop(PATIENCE)

    assert returned == []
    assert sorted(rejected) == list(range(count))
    expected = {(i, a): 1 for i in range(count) for a in range(1, max_attempts + 1)}
    assert dict(seen) == expected
    assert batcher.needs_capacity == 0
    assert batcher.inflight == 0


def test_retry_rejected_after_stop(batchers: list[Batcher]) -> None:
    """A retry put() from a callback that runs during stop() is rejected
    with BatcherStoppedError, so the operation is accounted for."""
    entered = threading.Event()
    release = threading.Event()
    outcome: list[str] = []

    def retry_late(ops: list[Operation]) -> None:
        entered.set()
        release.wait(PATIENCE)
        try:
            batcher.put(ops[0])
            outcome.append("accepted")
        except BatcherStoppedError:
            outcome.append("rejected")

    batcher = Batcher(flush_interval=0.01)
    batchers.append(batcher)
    batcher.start()
    batcher.put(Operation(Watcher(retry_late), 1))
    assert entered.wait(PATIENCE)

    stopper = threading.Thread(target=batcher.stop, args=(PATIENCE,))
    stopper.start()
    while batcher._state == "started":
        time.sleep(0.001)
    release.set()
    stopper.join(PATIENCE)

    assert not stopper.is_alive()
    assert outcome == ["rejected"]
    assert batcher.unprocessed == []
    assert batcher.needs_capacity == 0


# A callback that hangs past max_operation_time.

HANG_CASES = [
    pytest.param({"max_workers": 1}, "watcher", id="max_workers=1-watcher-time"),
    pytest.param({"max_workers": 1}, "batcher", id="max_workers=1-batcher-time"),
    pytest.param(
        {"max_concurrent_batches": 1}, "watcher", id="max_concurrent=1-watcher-time"
    ),
    pytest.param(
        {"max_concurrent_batches": 1}, "batcher", id="max_concurrent=1-batcher-time"
    ),
    pytest.param(
        {"max_concurrent_batches": 2, "max_workers": 2},
        "batcher",
        id="both=2-batcher-time",
    ),
]


@pytest.mark.parametrize(("limits", "time_from"), HANG_CASES)
def test_hung_callback_holds_only_its_slot(
    limits: dict[str, int], time_from: str, batchers: list[Batcher]
) -> None:
    """Batches of other watchers keep flowing while one watcher's callback
    hangs past its max operation time, both those put before it timed out
    and those put after. The hung batch is reported once and never
    delivered again."""
    hung_started = threading.Event()
    release = threading.Event()
    hung_calls: list[list[Any]] = []

    def hang(ops: list[Operation]) -> None:
        hung_calls.append([op.payload for op in ops])
        hung_started.set()
        release.wait(PATIENCE * 3)

    hang_time = 0.2
    if time_from == "watcher":
        hung = Watcher(hang, max_operation_time=hang_time)
        other_time = PATIENCE * 6
    else:
        hung = Watcher(hang)
        other_time = hang_time
    good = Recorder()
    # The other watchers' own time limit is far above the test's patience, so
    # their batches only flow if the hung one really frees its slot.
    others = [Watcher(good, max_operation_time=PATIENCE * 6) for _ in range(3)]
    batcher = Batcher(
        flush_interval=0.01,
        max_operation_time=other_time if time_from == "watcher" else hang_time,
        **limits,  # type: ignore[arg-type]
    )
    batchers.append(batcher)
    errors = collect(batcher.events, events.ERROR)
    batcher.start()

    hung_count = limits.get("max_workers", limits.get("max_concurrent_batches", 1))
    for i in range(hung_count):
        batcher.put(Operation(hung, 1, f"hung-{i}"))
    deadline = time.monotonic() + PATIENCE
    while len(hung_calls) < hung_count and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(hung_calls) == hung_count
    # Raised while every slot or worker is held by a hung callback.
    for i, watcher in enumerate(others):
        batcher.put(Operation(watcher, 1, i))

    delivered_while_hung = good.wait_for(3, FLOW_PATIENCE)
    # Raised after the hung batches timed out.
    for i, watcher in enumerate(others):
        batcher.put(Operation(watcher, 1, 3 + i))
    delivered_after = good.wait_for(6, FLOW_PATIENCE)
    release.set()
    returned = batcher.stop(PATIENCE)

    assert delivered_while_hung
    assert delivered_after
    assert sorted(good.payloads) == list(range(6))
    assert sorted(p for batch in hung_calls for p in batch) == [
        f"hung-{i}" for i in range(hung_count)
    ]
    timeouts = [e for e in errors if isinstance(e.metadata, TimeoutError)]
    assert len(timeouts) == hung_count
    assert returned == []
    assert batcher.inflight == 0
    assert batcher.needs_capacity == 0
    assert own_threads(batcher) == []


def test_hung_callbacks_after_burst_other_watcher_flows(
    batchers: list[Batcher],
) -> None:
    """A burst that queues more batches than max_workers, then hung
    callbacks on every worker: a later batch of another watcher still runs
    once the hung ones pass their max operation time."""
    release = threading.Event()
    hung_started = threading.Semaphore(0)

    def hang(ops: list[Operation]) -> None:
        hung_started.release()
        release.wait(PATIENCE * 3)

    def slow(ops: list[Operation]) -> None:
        time.sleep(0.01)

    burst = Watcher(slow)
    hung = Watcher(hang, max_operation_time=0.2)
    good = Recorder()
    other = Watcher(good, max_operation_time=PATIENCE * 6)
    batcher = Batcher(flush_interval=0.01, max_workers=2)
    batchers.append(batcher)
    for _ in range(10):
        batcher.put(Operation(burst, 1))
    batcher.start()
    while batcher.needs_capacity:
        time.sleep(0.005)

    batcher.put(Operation(hung, 1))
    batcher.put(Operation(hung, 1))
    assert hung_started.acquire(timeout=PATIENCE)
    assert hung_started.acquire(timeout=PATIENCE)
    batcher.put(Operation(other, 1, "other"))
    delivered = good.wait_for(1, FLOW_PATIENCE)
    release.set()
    batcher.stop(PATIENCE)

    assert delivered
    assert good.payloads == ["other"]


# The worker that sys.exit() ends reports it through threading.excepthook.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_callback_system_exit_keeps_worker_pool(batchers: list[Batcher]) -> None:
    """sys.exit() in a callback must not take the only worker with it."""
    calls: list[int] = []

    def exit_once(ops: list[Operation]) -> None:
        calls.append(ops[0].payload)
        if len(calls) == 1:
            raise SystemExit(1)

    watcher = Watcher(exit_once)
    batcher = Batcher(flush_interval=0.01, max_workers=1)
    batchers.append(batcher)
    batcher.start()
    batcher.put(Operation(watcher, 1, 0))
    deadline = time.monotonic() + PATIENCE
    while batcher.inflight or batcher.needs_capacity:
        assert time.monotonic() < deadline
        time.sleep(0.005)

    batcher.put(Operation(watcher, 1, 1))
    deadline = time.monotonic() + FLOW_PATIENCE
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    batcher.stop(1.0)

    assert calls == [0, 1]
    assert batcher.inflight == 0


def test_done_batches_not_retained(batchers: list[Batcher]) -> None:
    """A Batcher keeps no reference to operations whose batch is done, so
    memory does not grow with throughput times max_operation_time."""
    import gc
    import weakref

    class Payload:
        pass

    done = threading.Event()
    watcher = Watcher(lambda ops: done.set())
    batcher = Batcher(flush_interval=0.01)
    batchers.append(batcher)
    batcher.start()
    payload = Payload()
    ref = weakref.ref(payload)
    batcher.put(Operation(watcher, 1, payload))
    del payload

    assert done.wait(PATIENCE)
    while batcher.inflight:
        time.sleep(0.005)
    batcher.stop(PATIENCE)
    gc.collect()

    assert ref() is None


# Listeners that raise or are slow.


def raise_always(event: Event) -> None:
    raise RuntimeError(f"listener failed on {event.name}")


def test_raising_listener_flushes_continue(batchers: list[Batcher]) -> None:
    good = Recorder()
    watcher = Watcher(good, max_batch_size=5)
    limiter = FakeLimiter(100_000)
    batcher = Batcher(
        limiter,
        flush_interval=0.01,
        capacity_interval=0.01,
        audit_interval=0.01,
        max_operation_time=0.05,
        pause_time=0.05,
        emit_batch=True,
        emit_flush=True,
        emit_request=True,
    )
    batchers.append(batcher)
    # Subscribed first, so the raising listener runs before the counting one.
    batcher.events.subscribe(raise_always)
    limiter.events.subscribe(raise_always)
    flushes = collect(batcher.events, events.FLUSH_DONE)
    batcher.start()
    batcher.pause()

    # About 0.5 s of puts, so that about 50 flushes run after the pause.
    for i in range(200):
        batcher.put(Operation(watcher, 1, i, batchable=True))
        if i % 10 == 0:
            time.sleep(0.05)
    assert good.wait_for(200)
    returned = batcher.stop(PATIENCE)

    assert returned == []
    assert sorted(good.payloads) == list(range(200))
    assert len(flushes) >= 5
    assert limiter.requests >= 5


SLOW_LISTENER_CASES = [
    pytest.param(events.REQUEST, id="capacity-thread"),
    pytest.param(events.AUDIT_SKIP, id="audit-thread"),
    pytest.param(events.ERROR, id="worker-thread"),
]


@pytest.mark.parametrize("slow_event", SLOW_LISTENER_CASES)
def test_slow_listener_elsewhere_keeps_flush_interval(
    slow_event: str, batchers: list[Batcher]
) -> None:
    """A listener that takes 0.3 s on another thread's event leaves the
    flush loop at its interval. Over about a second of 20 ms intervals the
    nominal count is 50 flushes and a stalled loop would manage about 3, so
    the test requires a third of the nominal count."""
    listener_calls = 0

    def slow(event: Event) -> None:
        nonlocal listener_calls
        if event.name == slow_event:
            listener_calls += 1
            time.sleep(0.3)

    def fail(ops: list[Operation]) -> None:
        raise RuntimeError("callback failed")

    limiter = FakeLimiter(1_000_000)
    batcher = Batcher(
        limiter,
        flush_interval=0.02,
        capacity_interval=0.02,
        audit_interval=0.02,
        emit_flush=True,
        emit_request=True,
    )
    batchers.append(batcher)
    batcher.events.subscribe(slow)
    flushes = collect(batcher.events, events.FLUSH_DONE)
    failing = Watcher(fail)
    batcher.start()

    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        if slow_event == events.ERROR:
            batcher.put(Operation(failing, 1))
        time.sleep(0.02)
    counted = len(flushes)
    elapsed = time.monotonic() - start
    batcher.stop(PATIENCE)

    assert listener_calls >= 1
    assert counted >= elapsed / 0.02 / 3


@pytest.mark.parametrize("slow_event", [events.FLUSH_DONE, events.AUDIT_SKIP])
def test_slow_listener_elsewhere_keeps_capacity_interval(
    slow_event: str, batchers: list[Batcher]
) -> None:
    def slow(event: Event) -> None:
        if event.name == slow_event:
            time.sleep(0.3)

    limiter = FakeLimiter(1_000_000)
    batcher = Batcher(
        limiter,
        flush_interval=0.02,
        capacity_interval=0.02,
        audit_interval=0.02,
        emit_flush=True,
    )
    batchers.append(batcher)
    batcher.events.subscribe(slow)
    batcher.start()

    start = time.monotonic()
    time.sleep(1.0)
    counted = limiter.requests
    elapsed = time.monotonic() - start
    batcher.stop(PATIENCE)

    assert counted >= elapsed / 0.02 / 3


# stop() racing with producers, twice, concurrently and from a callback.


class Producers:
    """Threads that put operations until put() rejects them, recording each
    accepted and each rejected operation by its payload."""

    def __init__(
        self, batcher: Batcher, watchers: list[Watcher], count: int = 8
    ) -> None:
        self.accepted: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        self.rejected: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        self._batcher = batcher
        self._watchers = watchers
        self.threads = [
            threading.Thread(target=self._produce, args=(n,), name=f"producer-{n}")
            for n in range(count)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(PATIENCE)
        assert [t.name for t in self.threads if t.is_alive()] == []

    def _produce(self, number: int) -> None:
        extra_tries = 3
        sequence = 0
        while extra_tries:
            payload = (number, sequence)
            watcher = self._watchers[sequence % len(self._watchers)]
            sequence += 1
            try:
                self._batcher.put(Operation(watcher, 1, payload, batchable=True))
            except BatcherStoppedError:
                self.rejected[number].append(payload)
                extra_tries -= 1
            else:
                self.accepted[number].append(payload)
            if sequence % 50 == 0:
                time.sleep(0.001)

    def all_accepted(self) -> list[tuple[int, int]]:
        return [p for part in self.accepted for p in part]

    def all_rejected(self) -> list[tuple[int, int]]:
        return [p for part in self.rejected for p in part]


def check_accounting(
    producers: Producers,
    delivered: list[Any],
    returned: list[Operation],
) -> None:
    accepted = producers.all_accepted()
    rejected = producers.all_rejected()
    returned_payloads = [op.payload for op in returned]

    assert len(set(delivered)) == len(delivered), "an operation was delivered twice"
    assert len(set(returned_payloads)) == len(returned_payloads)
    assert set(delivered).isdisjoint(returned_payloads)
    assert sorted(delivered + returned_payloads) == sorted(accepted)
    assert set(rejected).isdisjoint(accepted)
    assert all(len(part) >= 3 for part in producers.rejected)


STOP_RACE_CASES = [
    pytest.param({}, id="unlimited"),
    pytest.param(
        {"rate_limiter": ProvisionedResource(3000), "buffer_size": 200},
        id="capacity-and-full-buffer",
    ),
    pytest.param(
        {"max_concurrent_batches": 1, "max_workers": 1, "buffer_size": 50},
        id="one-slot",
    ),
]


@pytest.mark.parametrize("settings", STOP_RACE_CASES)
def test_stop_racing_eight_producers(settings: dict[str, Any]) -> None:
    good = Recorder()
    watchers = [Watcher(good, max_batch_size=size) for size in (1, 7, 50, 0)]
    batcher = Batcher(flush_interval=0.01, **settings)
    producers = Producers(batcher, watchers)
    batcher.start()
    producers.start()

    time.sleep(0.3)
    returned = batcher.stop(0.3)
    producers.join()

    check_accounting(producers, good.payloads, returned)
    assert batcher.unprocessed == returned
    assert batcher.inflight == 0
    assert batcher.needs_capacity == 0
    assert own_threads(batcher) == []


def test_stop_twice_second_returns_empty() -> None:
    good = Recorder()
    watcher = Watcher(good)
    batcher = Batcher(ProvisionedResource(10), flush_interval=0.01)
    batcher.start()
    operations = [Operation(watcher, 5, i) for i in range(10)]
    for op in operations:
        batcher.put(op)

    first = batcher.stop(0.05)
    second = batcher.stop(0.05)

    assert first != []
    assert second == []
    assert sorted(good.payloads + [op.payload for op in first]) == list(range(10))
    assert batcher.unprocessed == first
    assert own_threads(batcher) == []


def test_stop_concurrent_from_two_threads() -> None:
    good = Recorder()
    watcher = Watcher(good, max_batch_size=3)
    batcher = Batcher(flush_interval=0.01, buffer_size=100)
    producers = Producers(batcher, [watcher])
    results: list[list[Operation]] = []
    results_lock = threading.Lock()
    barrier = threading.Barrier(3)

    def stop() -> None:
        barrier.wait(PATIENCE)
        returned = batcher.stop(PATIENCE)
        with results_lock:
            results.append(returned)

    stoppers = [threading.Thread(target=stop, name=f"stopper-{n}") for n in range(2)]
    batcher.start()
    producers.start()
    for thread in stoppers:
        thread.start()
    time.sleep(0.1)
    barrier.wait(PATIENCE)
    for thread in stoppers:
        thread.join(PATIENCE * 2)
    producers.join()

    assert [t.name for t in stoppers if t.is_alive()] == []
    assert len(results) == 2
    assert [] in results
    returned = results[0] or results[1]
    check_accounting(producers, good.payloads, returned)
    assert batcher.needs_capacity == 0
    assert own_threads(batcher) == []


def test_stop_from_callback_no_deadlock() -> None:
    good = Recorder()
    from_callback: list[list[Operation]] = []

    def stop_inside(ops: list[Operation]) -> None:
        good(ops)
        if any(op.payload == (0, 20) for op in ops):
            from_callback.append(batcher.stop(PATIENCE))

    watcher = Watcher(stop_inside, max_batch_size=4)
    batcher = Batcher(ProvisionedResource(2000), flush_interval=0.01, buffer_size=100)
    producers = Producers(batcher, [watcher])
    batcher.start()
    producers.start()
    producers.join()
    from_outside = batcher.stop(PATIENCE)
    # The callback that called stop() is the last thread of the Batcher.
    deadline = time.monotonic() + PATIENCE
    while own_threads(batcher) and time.monotonic() < deadline:
        time.sleep(0.01)

    assert len(from_callback) == 1
    assert from_outside == []
    check_accounting(producers, good.payloads, from_callback[0])
    assert batcher.needs_capacity == 0
    assert own_threads(batcher) == []


def test_stop_from_callback_one_worker_prompt() -> None:
    """stop() from the only worker's callback must not wait out its whole
    timeout for batches queued behind that same worker."""
    good = Recorder()
    took: list[float] = []

    def stop_inside(ops: list[Operation]) -> None:
        good(ops)
        if ops[0].payload == 0:
            start = time.monotonic()
            batcher.stop(4.0)
            took.append(time.monotonic() - start)

    watcher = Watcher(stop_inside)
    batcher = Batcher(flush_interval=0.01, max_workers=1)
    for i in range(5):
        batcher.put(Operation(watcher, 1, i))
    batcher.start()
    assert good.wait_for(5, timeout=PATIENCE)
    batcher.stop(PATIENCE)

    assert sorted(good.payloads) == list(range(5))
    assert len(took) == 1
    assert took[0] < 2.0


# The wall clock jumps; the Batcher's default clock is time.monotonic.

DAY = datetime.timedelta(days=1)


def wall_clock() -> float:
    """A clock that reads the wall clock at call time, which freezegun fakes."""
    return time.time()


def jump_scenario(clock: Callable[[], float] | None) -> dict[str, bool]:
    """Drive the loop steps in this thread across wall-clock jumps and report
    which behaviour each jump disturbed. freeze_time starts after the
    Batcher is built, as a program's clock changes while it runs."""
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    release = threading.Event()
    good = Recorder()

    def hang(ops: list[Operation]) -> None:
        release.wait(PATIENCE)

    hung = Watcher(hang, max_operation_time=5.0)
    watcher = Watcher(good)
    batcher = Batcher(
        ProvisionedResource(1000),
        flush_interval=1.0,
        max_operation_time=5.0,
        pause_time=0.2,
        **kwargs,
    )
    audits = collect(batcher.events, events.AUDIT_SKIP)
    disturbed = {}
    try:
        with freeze_time("2030-01-01 12:00:00") as frozen:
            batcher.put(Operation(hung, 1000))
            first = batcher._flush_step()
            assert first == 1000

            # Forwards a day: the hung batch has 5 s, the one-second window
            # is full and the last raise was just now.
            frozen.move_to(datetime.datetime(2030, 1, 2, 12))
            batcher._audit_step()
            disturbed["operation timeout"] = batcher.inflight == 0
            disturbed["audit"] = len(audits) == 0
            batcher.put(Operation(watcher, 1, "after-forward"))
            disturbed["capacity window"] = batcher._flush_step() > 0

            # Backwards two days, then a real pause: it ends after 0.2 s.
            frozen.move_to(datetime.datetime(2029, 12, 31, 12))
            batcher.pause()
            frozen.move_to(datetime.datetime(2029, 12, 30, 12))
            time.sleep(1.1)
            raised = batcher._flush_step()
            disturbed["pause and interval"] = raised == 0
    finally:
        release.set()
        batcher.stop(PATIENCE)
    return disturbed


def test_wall_clock_jumps_leave_batcher_unaffected() -> None:
    disturbed = jump_scenario(None)

    assert disturbed == {
        "operation timeout": False,
        "audit": False,
        "capacity window": False,
        "pause and interval": False,
    }


def test_wall_clock_jumps_detected_with_wall_clock() -> None:
    """The scenario can fail: a Batcher reading the wall clock is disturbed
    by every jump."""
    disturbed = jump_scenario(wall_clock)

    assert disturbed == {
        "operation timeout": True,
        "audit": True,
        "capacity window": True,
        "pause and interval": True,
    }


def test_wall_clock_jumps_threads_keep_flushing() -> None:
    """With the loops on their own threads, operations put while the wall
    clock is frozen, ticks and jumps either way are all delivered."""
    good = Recorder()
    watcher = Watcher(good, max_batch_size=10)
    batcher = Batcher(
        ProvisionedResource(500), flush_interval=0.01, audit_interval=0.01
    )

    with freeze_time("2030-01-01 12:00:00") as frozen:
        batcher.start()
        for i in range(300):
            batcher.put(Operation(watcher, 1, i, batchable=True))
            if i % 50 == 0:
                frozen.move_to(datetime.datetime(2030 + (i % 100), 1, 1))
            if i % 50 == 25:
                frozen.tick(-DAY * 400)
        assert good.wait_for(300)
        returned = batcher.stop(PATIENCE)

    assert returned == []
    assert sorted(good.payloads) == list(range(300))
    assert own_threads(batcher) == []
