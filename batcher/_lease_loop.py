"""Parts of the SharedResource control loop: the lease calls it decides,
their results, the outbox of effects applied after its lock is released,
the error throttle and the thread pool that runs lease calls.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import events
from ._lease import PartitionState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Call:
    kind: str
    index: int = -1
    # A quiet call's failure is logged at DEBUG and not reported as an error.
    quiet: bool = False


@dataclass
class _Result:
    call: _Call
    sent_at: float
    received_at: float
    ok: bool = False
    states: list[PartitionState] | None = None
    error: Exception | None = None


@dataclass
class _Outbox:
    """Events, log lines and lease calls decided under the lock, acted on
    after it is released."""

    events: list[tuple[str, int, str | None, Any]] = field(default_factory=list)
    calls: list[_Call] = field(default_factory=list)
    logs: list[tuple[int, str, tuple[Any, ...]]] = field(default_factory=list)

    def log(self, level: int, message: str, *args: Any) -> None:
        self.logs.append((level, message, args))

    def emit(
        self, name: str, val: int = 0, msg: str | None = None, meta: Any = None
    ) -> None:
        self.events.append((name, val, msg, meta))


class _ErrorThrottle:
    """Report the first error at once, then at most one summary per interval."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next_report = -math.inf
        self._suppressed = 0
        self._last_message = ""
        self._last_error: Exception | None = None
        self.total = 0

    def record(self, now: float, message: str, error: Exception, out: _Outbox) -> None:
        self.total += 1
        if now >= self._next_report and self._suppressed == 0:
            self._next_report = now + self._interval
            out.emit(events.ERROR, 1, message, error)
            out.log(logging.WARNING, "%s", message)
            return
        self._suppressed += 1
        self._last_message = message
        self._last_error = error

    def flush(self, now: float, out: _Outbox, *, force: bool = False) -> None:
        if self._suppressed == 0 or (now < self._next_report and not force):
            return
        message = (
            f"{self._suppressed} more lease store errors since the last report; "
            f"the last one: {self._last_message}"
        )
        out.emit(events.ERROR, self._suppressed, message, self._last_error)
        out.log(logging.WARNING, "%s", message)
        self._suppressed = 0
        self._next_report = now + self._interval

    def next_report(self) -> float:
        return self._next_report if self._suppressed else math.inf


class _LeasePool:
    """A fixed set of threads named ``batcher-lease-N`` that run lease calls."""

    def __init__(self, size: int) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"batcher-lease-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def shutdown(self, timeout: float) -> None:
        """Run the queued tasks, then end and join every thread."""
        for _ in self._threads:
            self._tasks.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("thread %s still runs a lease call", thread.name)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            except Exception:
                logger.exception("lease call failed unexpectedly")
