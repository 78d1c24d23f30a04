"""Test doubles shared by the core tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from batcher import Event, EventBus, Operation, Watcher


class FakeClock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FixedLimiter:
    """A rate limiter whose capacity a test sets directly."""

    def __init__(self, capacity: int, max_capacity: int | None = None) -> None:
        self.capacity = capacity
        self.max_capacity = capacity if max_capacity is None else max_capacity
        self.events = EventBus()
        self.requests: list[int] = []
        self.started = 0
        self.stopped = 0

    def give_me(self, target: int) -> None:
        self.requests.append(target)

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1


class Recorder:
    """Collect events from one or more buses."""

    def __init__(self, *buses: EventBus) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        for bus in buses:
            bus.subscribe(self)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def names(self) -> list[str]:
        with self._lock:
            return [e.name for e in self.events]

    def of(self, name: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.name == name]


class Collector:
    """A watcher callback that records every batch it receives."""

    def __init__(self, on_batch: Callable[[list[Operation]], None] | None = None):
        self.batches: list[list[Operation]] = []
        self._lock = threading.Lock()
        self._on_batch = on_batch
        self.count_changed = threading.Condition(self._lock)

    def __call__(self, batch: list[Operation]) -> None:
        if self._on_batch is not None:
            self._on_batch(batch)
        with self._lock:
            self.batches.append(list(batch))
            self.count_changed.notify_all()

    @property
    def operations(self) -> list[Operation]:
        with self._lock:
            return [op for batch in self.batches for op in batch]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` operations arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while sum(len(b) for b in self.batches) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.count_changed.wait(remaining)
        return True


def make_watcher(**kwargs: object) -> tuple[Watcher, Collector]:
    collector = Collector()
    return Watcher(collector, **kwargs), collector  # type: ignore[arg-type]


def batcher_threads() -> list[str]:
    """Names of live threads that a Batcher or SharedResource started."""
    return [t.name for t in threading.enumerate() if t.name.startswith("batcher-")]
