"""The Batcher: buffer operations, raise them in batches within capacity."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

from . import events
from ._bus import EventBus
from ._errors import (
    BatcherStoppedError,
    BufferFullError,
    NoWatcherError,
    TooExpensiveError,
    TooManyAttemptsError,
    WrongOrderError,
)
from ._operation import Batch, Operation, Watcher
from ._pacer import Pacer
from ._ratelimit import RateLimiter
from ._validate import check_flag, check_int, check_seconds
from ._workers import WorkerPool

__all__ = ["Batcher"]

logger = logging.getLogger(__name__)

_NEW = "new"
_STARTED = "started"
_STOPPING = "stopping"
_STOPPED = "stopped"

_instance_numbers = itertools.count(1)
_cost_of = operator.attrgetter("cost")

#: Wake-up delays kept to estimate the usual delay of the flush thread.
_DELAY_SAMPLES = 50


def _usual_delay(delays: deque[float], interval: float) -> float:
    """Return the 10th percentile of recent wake-up delays, at most a
    tenth of the interval."""
    if not delays:
        return 0.0
    ordered = sorted(delays)
    return min(max(ordered[len(ordered) // 10], 0.0), interval / 10)


class _Batch:
    """Operations raised together to one watcher, until they are done."""

    __slots__ = ("watcher", "operations", "cost", "deadline", "done", "timed_out")

    def __init__(self, watcher: Watcher, operations: Batch, deadline: float) -> None:
        self.watcher = watcher
        self.operations = operations
        self.cost = sum(map(_cost_of, operations))
        self.deadline = deadline
        self.done = False
        self.timed_out = False


class Batcher:
    """Buffer operations and hand them to their watchers in batches, within
    the capacity of a rate limiter.

    ``put()`` is thread-safe and may be called before ``start()``. Every
    ``flush_interval`` seconds the flush thread walks the buffer from the
    head and raises what the capacity allows: batchable operations join
    their watcher's batch up to ``max_batch_size``, others go alone. Each
    batch runs ``watcher.callback(batch)`` on a worker thread. Without a
    rate limiter every flush raises the whole buffer.

    Events are delivered on the thread that emits them: the flush, capacity
    and audit threads, a worker thread (``error`` from a callback) or the
    caller (``pause``, ``shutdown``).
    """

    def __init__(
        self,
        rate_limiter: RateLimiter | None = None,
        buffer_size: int = 10_000,
        flush_interval: float = 0.1,
        capacity_interval: float = 0.1,
        audit_interval: float = 10.0,
        max_operation_time: float = 60.0,
        pause_time: float = 0.5,
        max_concurrent_batches: int = 0,
        error_on_full_buffer: bool = False,
        emit_batch: bool = False,
        emit_flush: bool = False,
        emit_request: bool = False,
        *,
        max_workers: int | None = None,
        manage_rate_limiter: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_limiter is not None and (
            isinstance(rate_limiter, type) or not isinstance(rate_limiter, RateLimiter)
        ):
            raise TypeError(
                f"rate_limiter must implement batcher.RateLimiter, got {rate_limiter!r}"
            )
        self._rate_limiter = rate_limiter
        self._buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self._flush_interval = check_seconds("flush_interval", flush_interval)
        self._capacity_interval = check_seconds("capacity_interval", capacity_interval)
        self._audit_interval = check_seconds("audit_interval", audit_interval)
        self._max_operation_time = check_seconds(
            "max_operation_time", max_operation_time
        )
        self._pause_time = check_seconds("pause_time", pause_time)
        self._max_concurrent_batches = check_int(
            "max_concurrent_batches", max_concurrent_batches
        )
        self._error_on_full_buffer = check_flag(
            "error_on_full_buffer", error_on_full_buffer
        )
        self._emit_batch = check_flag("emit_batch", emit_batch)
        self._emit_flush = check_flag("emit_flush", emit_flush)
        self._emit_request = check_flag("emit_request", emit_request)
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        self._max_workers = check_int("max_workers", max_workers, minimum=1)
        self._manage_rate_limiter = check_flag(
            "manage_rate_limiter", manage_rate_limiter
        )
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        self._clock = clock

        self._events = EventBus()
        self._number = next(_instance_numbers)

        # Guards the buffer, the counters, the inflight batches, the pause
        # deadline and the state. Never held across a callback, a listener
        # or a rate limiter call.
        self._lock = threading.Lock()
        # Producers blocked on a full buffer wait here; flushes and stop()
        # notify it.
        self._not_full = threading.Condition(self._lock)
        # stop() waits here for inflight batches to finish.
        self._all_done = threading.Condition(self._lock)
        self._buffer: deque[Operation] = deque()
        self._target = 0
        self._inflight = 0
        self._batches: set[_Batch] = set()
        self._deadlines: list[tuple[float, int, _Batch]] = []
        self._deadline_numbers = itertools.count()
        self._last_raise = self._clock()
        self._paused_until: float | None = None
        self._state = _NEW
        # Whether stop() has begun, so put() rejects operations.
        self._closed = False
        self._flushing = False

        self._pacer = Pacer(self._flush_interval)
        self._pool: WorkerPool[_Batch] = WorkerPool(
            self._run_batch, self._max_workers, f"batcher-{self._number}-worker"
        )
        self._stop_event = threading.Event()
        self._flush_wake = threading.Event()
        self._stopped_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stop_lock = threading.Lock()

        #: Operations that the last ``stop()`` returned unprocessed.
        self.unprocessed: list[Operation] = []

    # Public properties.

    @property
    def events(self) -> EventBus:
        """Event bus of this Batcher."""
        return self._events

    @property
    def inflight(self) -> int:
        """Batches handed to watchers and not yet done."""
        return self._inflight

    @property
    def operations_in_buffer(self) -> int:
        """Operations waiting in the buffer."""
        return len(self._buffer)

    @property
    def needs_capacity(self) -> int:
        """Cost of every operation put and not yet done: the target that
        the capacity thread requests of the rate limiter."""
        return self._target

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The rate limiter, or None when capacity is unlimited."""
        return self._rate_limiter

    # Producers.

    def put(self, op: Operation) -> None:
        """Add an operation to the buffer.

        Thread-safe. Blocks while the buffer is full, unless the Batcher was
        built with ``error_on_full_buffer``.

        Raises:
            NoWatcherError: the operation has no watcher.
            TooManyAttemptsError: it reached its watcher's ``max_attempts``.
            TooExpensiveError: its cost is above the rate limiter's
                ``max_capacity``.
            BufferFullError: the buffer is full and ``error_on_full_buffer``.
            BatcherStoppedError: ``stop()`` was called.
        """
        if not isinstance(op, Operation):
            raise TypeError(f"put() takes an Operation, got {op!r}")
        watcher = op.watcher
        if watcher is None:
            raise NoWatcherError(
                "operation has no watcher to receive it; build it with "
                "Operation(Watcher(callback), cost)"
            )
        if watcher.max_attempts and op.attempt >= watcher.max_attempts:
            raise TooManyAttemptsError(op.attempt, watcher.max_attempts)
        if self._rate_limiter is not None:
            max_capacity = self._rate_limiter.max_capacity
            if op.cost > max_capacity:
                raise TooExpensiveError(op.cost, max_capacity)

        with self._lock:
            while True:
                if self._closed:
                    raise BatcherStoppedError("Batcher is stopped; put() rejected")
                if len(self._buffer) < self._buffer_size:
                    break
                if self._error_on_full_buffer:
                    raise BufferFullError(self._buffer_size)
                self._not_full.wait()
            self._buffer.append(op)
            self._target += op.cost

    # Lifecycle.

    def start(self) -> None:
        """Start the rate limiter (if managed) and the flush, capacity and
        audit threads.

        Raises:
            WrongOrderError: the Batcher was already started or stopped.
        """
        with self._lock:
            if self._state is not _NEW:
                raise WrongOrderError(
                    f"start() on a Batcher that is {self._state}; a Batcher "
                    "starts once, so build a new one to start again"
                )
            self._state = _STARTED
            self._last_raise = self._clock()
        if self._rate_limiter is not None and self._manage_rate_limiter:
            try:
                self._rate_limiter.start()
            except BaseException:
                with self._lock:
                    self._state = _NEW
                raise
        loops: list[tuple[str, Callable[[], None], float]] = [
            ("audit", self._audit_step, self._audit_interval),
        ]
        if self._rate_limiter is not None:
            loops.append(("capacity", self._capacity_step, self._capacity_interval))
        for role, step, interval in loops:
            self._threads.append(
                threading.Thread(
                    target=self._run_loop,
                    args=(step, interval),
                    name=f"batcher-{self._number}-{role}",
                    daemon=True,
                )
            )
        self._threads.append(
            threading.Thread(
                target=self._run_flush_loop,
                name=f"batcher-{self._number}-flush",
                daemon=True,
            )
        )
        for thread in self._threads:
            thread.start()
        logger.info("batcher %d started", self._number)

    def flush(self) -> None:
        """Ask the flush thread to flush now instead of at its next interval."""
        self._flush_wake.set()

    def pause(self) -> None:
        """Suspend flushing, capacity requests and audits for ``pause_time``.

        Call it when the datastore reports throttling or timeouts. A pause
        while paused does not extend the pause.
        """
        now = self._clock()
        with self._lock:
            if self._paused_until is not None and now < self._paused_until:
                return
            self._paused_until = now + self._pause_time
        self._events.emit(events.PAUSE, round(self._pause_time * 1000))
        logger.info("batcher %d paused for %.3f s", self._number, self._pause_time)

    def stop(self, timeout: float = 10.0) -> list[Operation]:
        """Drain the buffer within capacity, wait for inflight batches, stop.

        Keeps flushing until the buffer is empty or ``timeout`` seconds
        pass, then waits for inflight batches for what is left of the
        timeout. Returns the operations that were never handed to a
        watcher; they are also kept in ``unprocessed``. Once stop() has
        begun, ``put()`` raises BatcherStoppedError. Every thread the
        Batcher started has ended when it returns, except a worker whose
        callback still runs after the timeout, which is logged and reported
        as an ``error`` event. Calling it again returns an empty list; from
        a callback it does not wait for that callback's own batch.
        """
        timeout = check_seconds("timeout", timeout, allow_zero=True)
        current = threading.current_thread()
        in_worker = self._pool.is_worker(current)
        with self._lock:
            state = self._state
            if state is _NEW or state is _STARTED:
                self._state = _STOPPING
                self._closed = True
                self._not_full.notify_all()
        if state is _STOPPING or state is _STOPPED:
            if not in_worker:
                self._stopped_event.wait(timeout)
            return []
        if state is _NEW and self._buffer:
            logger.warning(
                "batcher %d: stop() on a Batcher that was never started returns "
                "its %d buffered operations; call start() to process them",
                self._number,
                len(self._buffer),
            )
        with self._stop_lock:
            return self._shutdown(started=state is _STARTED, timeout=timeout)

    def __enter__(self) -> Batcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        unprocessed = self.stop()
        if unprocessed:
            logger.warning(
                "batcher %d stopped with %d operations unprocessed; they are in "
                "Batcher.unprocessed",
                self._number,
                len(unprocessed),
            )

    def __repr__(self) -> str:
        return (
            f"<Batcher {self._number} {self._state} buffered={len(self._buffer)} "
            f"inflight={self._inflight} needs_capacity={self._target}>"
        )

    # Loop steps. Each is one iteration of a loop, callable without threads.

    def _paused(self, now: float) -> bool:
        """Return whether a pause is running at ``now``, emitting ``resume``
        when one has just ended."""
        with self._lock:
            until = self._paused_until
            if until is None:
                return False
            if now < until:
                return True
            self._paused_until = None
        self._events.emit(events.RESUME)
        return False

    def _flush_step(self) -> int:
        """Raise what capacity allows from the buffer; return the cost raised."""
        now = self._clock()
        if self._paused(now):
            return 0
        self._expire_batches(now)
        capacity: int | None = None
        if self._rate_limiter is not None:
            try:
                capacity = max(int(self._rate_limiter.capacity), 0)
            except Exception as exc:
                self._report_error("reading the rate limiter's capacity failed", exc)
                capacity = 0

        with self._lock:
            if self._flushing:
                return 0
            self._flushing = True
        try:
            if self._emit_flush:
                self._events.emit(events.FLUSH_START)
            with self._lock:
                batches, cost, blocked_cost = self._take_batches(now, capacity)
            for batch in batches:
                self._pool.submit(batch)
            if self._emit_batch:
                for batch in batches:
                    self._events.emit(
                        events.BATCH, len(batch.operations), None, batch.operations
                    )
            if capacity is not None:
                self._pacer.record(self._clock(), cost, blocked_cost)
            if self._emit_flush:
                self._events.emit(events.FLUSH_DONE, cost)
        finally:
            with self._lock:
                self._flushing = False
        return cost

    def _take_batches(
        self, now: float, capacity: int | None
    ) -> tuple[list[_Batch], int, int]:
        """Walk the buffer from the head and form the batches to raise.

        Called with the lock held. Returns the batches, their total cost and
        the cost of the operation that stopped the walk for lack of budget
        (0 if none did).
        """
        buffer = self._buffer
        if not buffer:
            return [], 0, 0
        limit = self._max_concurrent_batches
        if capacity is None and not limit:
            batches, cost = self._register(now, self._group_all(now))
            return batches, cost, 0
        budget = math.inf if capacity is None else self._pacer.budget(now, capacity)
        free_slots = (limit - self._inflight) if limit else math.inf
        if free_slots <= 0:
            return [], 0, 0

        open_batches: dict[Watcher, Batch] = {}
        ready: list[tuple[Watcher, Batch]] = []
        set_aside: list[Operation] = []
        spent = 0
        blocked_cost = 0
        while buffer:
            op = buffer[0]
            watcher = op.watcher
            assert watcher is not None  # put() rejects operations without one
            batch = open_batches.get(watcher)
            if batch is not None and not op.batchable:
                # Raise the open batch first so the watcher receives its
                # operations in the order they were put.
                ready.append((watcher, open_batches.pop(watcher)))
                batch = None
            if batch is None and free_slots <= 0:
                if any(
                    not w.max_batch_size or len(b) < w.max_batch_size
                    for w, b in open_batches.items()
                ):
                    # The walk goes on to fill batches that have a slot;
                    # this operation keeps its place in the buffer.
                    set_aside.append(buffer.popleft())
                    continue
                break
            if op.cost > budget - spent:
                blocked_cost = op.cost
                break
            buffer.popleft()
            spent += op.cost
            op.attempt += 1
            if not op.batchable:
                free_slots -= 1
                ready.append((watcher, Batch((op,), now)))
                continue
            if batch is None:
                free_slots -= 1
                batch = open_batches[watcher] = Batch((), now)
            batch.append(op)
            if watcher.max_batch_size and len(batch) >= watcher.max_batch_size:
                ready.append((watcher, open_batches.pop(watcher)))
        ready.extend(open_batches.items())
        if set_aside:
            buffer.extendleft(reversed(set_aside))
        batches, _ = self._register(now, ready)
        return batches, spent, blocked_cost

    def _group_all(self, now: float) -> list[tuple[Watcher, Batch]]:
        """Take the whole buffer into batches; lock held.

        The path for no capacity limit and no slot limit, with nothing to
        check per operation but its watcher and batch size.
        """
        operations, self._buffer = self._buffer, deque()
        open_batches: dict[Watcher, Batch] = {}
        ready: list[tuple[Watcher, Batch]] = []
        for op in operations:
            watcher = op.watcher
            assert watcher is not None  # put() rejects operations without one
            op.attempt += 1
            if op.batchable:
                batch = open_batches.get(watcher)
                if batch is None:
                    batch = open_batches[watcher] = Batch((), now)
                batch.append(op)
                size = watcher.max_batch_size
                if size and len(batch) >= size:
                    ready.append((watcher, open_batches.pop(watcher)))
            else:
                # Close the open batch first to keep the watcher's order.
                earlier = open_batches.pop(watcher, None)
                if earlier is not None:
                    ready.append((watcher, earlier))
                ready.append((watcher, Batch((op,), now)))
        ready.extend(open_batches.items())
        return ready

    def _register(
        self, now: float, ready: list[tuple[Watcher, Batch]]
    ) -> tuple[list[_Batch], int]:
        """Record ``ready`` as inflight batches and return them with their
        total cost; lock held."""
        if not ready:
            return [], 0
        batches = []
        cost = 0
        for watcher, operations in ready:
            timeout = watcher.max_operation_time or self._max_operation_time
            batch_obj = _Batch(watcher, operations, now + timeout)
            cost += batch_obj.cost
            batches.append(batch_obj)
            self._batches.add(batch_obj)
            heapq.heappush(
                self._deadlines,
                (batch_obj.deadline, next(self._deadline_numbers), batch_obj),
            )
        self._inflight += len(batches)
        self._last_raise = now
        self._not_full.notify_all()
        return batches, cost

    def _capacity_step(self) -> None:
        """Request capacity for everything not yet done."""
        if self._rate_limiter is None or self._paused(self._clock()):
            return
        target = self._target
        if self._emit_request:
            self._events.emit(events.REQUEST, target)
        try:
            self._rate_limiter.give_me(target)
        except Exception as exc:
            self._report_error("requesting capacity of the rate limiter failed", exc)

    def _audit_step(self) -> None:
        """Check the target and inflight count against the batches alive."""
        now = self._clock()
        if self._paused(now):
            return
        self._expire_batches(now)
        with self._lock:
            if self._buffer or now - self._last_raise <= self._max_operation_time:
                name, message = events.AUDIT_SKIP, None
            else:
                expected_target = sum(b.cost for b in self._batches)
                expected_inflight = len(self._batches)
                problems = []
                if self._target != expected_target:
                    problems.append(
                        f"target was {self._target}, reset to {expected_target}"
                    )
                    self._target = expected_target
                if self._inflight != expected_inflight:
                    problems.append(
                        f"inflight was {self._inflight}, reset to {expected_inflight}"
                    )
                    self._inflight = expected_inflight
                if problems:
                    name, message = events.AUDIT_FAIL, "; ".join(problems)
                else:
                    name, message = events.AUDIT_PASS, None
        if name == events.AUDIT_FAIL:
            logger.warning("batcher %d audit failed: %s", self._number, message)
        self._events.emit(name, 0, message)

    # Batches.

    def _run_batch(self, batch: _Batch) -> None:
        """Run one batch's callback on a worker thread, then mark it done."""
        try:
            batch.watcher.callback(batch.operations)
        except BaseException as exc:
            # SystemExit and the like from a callback must not end a worker.
            self._report_error(
                f"watcher callback raised on a batch of {len(batch.operations)} "
                "operations",
                exc,
            )
        finally:
            self._finish_batch(batch)

    def _finish_batch(self, batch: _Batch) -> None:
        with self._lock:
            if batch.timed_out:
                self._pool.restore()
                return
            self._release_batch(batch)

    def _release_batch(self, batch: _Batch) -> None:
        """Take a batch's cost off the target and free its slot; lock held."""
        if batch.done:
            return
        batch.done = True
        self._batches.discard(batch)
        self._target = max(self._target - batch.cost, 0)
        self._inflight = max(self._inflight - 1, 0)
        if len(self._deadlines) > 2 * len(self._batches):
            # Drop finished batches so the heap does not keep their
            # operations alive until their deadlines pass.
            self._deadlines = [d for d in self._deadlines if not d[2].done]
            heapq.heapify(self._deadlines)
        if not self._inflight:
            self._all_done.notify_all()

    def _expire_batches(self, now: float) -> None:
        """Release batches whose callback ran past its max operation time."""
        expired = []
        with self._lock:
            deadlines = self._deadlines
            while deadlines and deadlines[0][0] <= now:
                batch = heapq.heappop(deadlines)[2]
                if batch.done:
                    continue
                batch.timed_out = True
                self._release_batch(batch)
                self._pool.write_off()
                expired.append(batch)
        for batch in expired:
            message = (
                f"batch of {len(batch.operations)} operations exceeded its max "
                "operation time; its capacity and slot were released"
            )
            self._report_error(message, TimeoutError(message))

    def _report_error(self, message: str, exc: BaseException) -> None:
        logger.warning("batcher %d: %s: %r", self._number, message, exc)
        self._events.emit(events.ERROR, 0, message, exc)

    # Threads.

    def _run_loop(self, step: Callable[[], None], interval: float) -> None:
        next_run = self._clock() + interval
        while not self._stop_event.wait(self._wait_time(next_run)):
            now = self._clock()
            if now < next_run:
                continue
            try:
                step()
            except Exception:
                logger.exception("batcher %d: loop step failed", self._number)
            next_run = max(next_run + interval, self._clock())

    def _run_flush_loop(self) -> None:
        interval = self._flush_interval
        # Recent wake-up delays: how late Event.wait() returned past its
        # deadline. Threads holding the GIL make every wake-up a few ms late.
        delays: deque[float] = deque(maxlen=_DELAY_SAMPLES)
        next_run = self._clock() + interval
        while not self._stop_event.is_set():
            woken = self._flush_wake.wait(self._wait_time(next_run))
            if self._stop_event.is_set():
                break
            now = self._clock()
            if not woken and now < next_run:
                continue
            if not woken:
                delays.append(now - next_run)
            self._flush_wake.clear()
            try:
                self._flush_step()
            except Exception:
                logger.exception("batcher %d: flush failed", self._number)
            # The next flush starts one interval after this one ended, so
            # two flushes rarely share a window of one interval, and wakes
            # early by the usual delay so the flushes do not drift late.
            # The pacer limits a flush that still comes too soon.
            next_run = self._clock() + interval - _usual_delay(delays, interval)

    def _wait_time(self, next_run: float) -> float:
        now = self._clock()
        until = max(next_run, self._paused_until or next_run)
        return min(max(until - now, 0.0), 3600.0)

    def _shutdown(self, started: bool, timeout: float) -> list[Operation]:
        deadline = self._clock() + timeout
        current = threading.current_thread()
        in_worker = self._pool.is_worker(current)
        if started:
            # Let the flush thread drain the buffer within capacity.
            while self._buffer and self._clock() < deadline:
                self._flush_wake.set()
                self._stop_event.wait(min(self._flush_interval, 0.05))
            self._stop_event.set()
            self._flush_wake.set()
            for thread in self._threads:
                if thread is not current:
                    thread.join(max(deadline - self._clock(), 0.1))
            # A callback that calls stop() is itself an inflight batch, and
            # its thread is replaced so batches queued behind it can run.
            own = 1 if in_worker else 0
            if in_worker:
                self._pool.write_off()
            while True:
                self._expire_batches(self._clock())
                with self._lock:
                    remaining = deadline - self._clock()
                    if self._inflight <= own or remaining <= 0:
                        break
                    self._all_done.wait(min(remaining, 0.05))

        with self._lock:
            unprocessed = list(self._buffer)
            self._buffer.clear()
            self._target = max(self._target - sum(op.cost for op in unprocessed), 0)
            self._state = _STOPPED
            self._not_full.notify_all()
            still_inflight = self._inflight

        hung = self._pool.shutdown(max(deadline - self._clock(), 0.0))
        if hung:
            message = (
                f"{len(hung)} worker threads still run callbacks after stop() timed "
                "out: " + ", ".join(t.name for t in hung)
            )
            self._report_error(message, TimeoutError(message))
        if self._rate_limiter is not None and self._manage_rate_limiter and started:
            try:
                self._rate_limiter.stop()
            except Exception as exc:
                self._report_error("stopping the rate limiter failed", exc)
        self.unprocessed = unprocessed
        logger.info(
            "batcher %d stopped: %d operations unprocessed, %d batches inflight",
            self._number,
            len(unprocessed),
            still_inflight,
        )
        self._events.emit(events.SHUTDOWN, len(unprocessed))
        self._stopped_event.set()
        return unprocessed
