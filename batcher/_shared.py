"""SharedResource: a rate limiter that shares one datastore's capacity
between processes through exclusive leases on partitions.

The shared capacity is cut into partitions of ``factor`` capacity each.
An instance counts a partition toward its capacity only while it holds the
partition's lease, so the instances together never count more partitions
than exist. How the leases are spread:

* Holds. A hold on a partition is timed from the moment the acquire or
  renew request is sent. It ends ``SAFETY_MARGIN`` seconds before the
  lease can expire on the server, so a partition is not counted after its
  lease may have passed to someone else. ``capacity`` is computed from
  the hold deadlines when it is read, so a hold that ends between two
  control steps stops counting on time.
* Demand. ``give_me`` sets the number of partitions wanted. Held leases
  that are still wanted are renewed every ``lease_duration / 2`` seconds;
  leases no longer wanted for ``release_delay`` seconds are released.
* Handover. A partition that stops counting keeps its lease for
  ``usage_window`` more seconds before it is released, because the Batcher
  may have spent its capacity within the last second and the next holder
  will spend it at once. Two instances thus never spend one partition's
  capacity within the same sliding second.
* Ramp. While demand is unmet, the instance lists the partitions in one
  request and acquires all the free ones it wants at once, on a pool of
  ``max_parallel`` threads.
* Fair share. When nothing is free and the instance holds less than its
  fair share (partitions divided by the instances seen wanting), it breaks
  the leases of the instance that holds the most above its share. A
  broken lease cannot be renewed and ends with its current term, so its
  holder finds out at its next renewal (within ``lease_duration / 2``
  seconds), stops counting it and releases it, and the waiter takes it at
  its next listing. The holder then keeps at most its fair share for
  ``lease_duration`` seconds. The share thus converges within about one
  renewal period plus ``max_interval`` per step; with three or more
  instances it may take a few such rounds, each one moving partitions
  from the instance holding the most.
* Faults. A failed request is retried at a later step; errors are
  reported at once and then summarised every ``ERROR_SUMMARY_INTERVAL``
  seconds. If the container or a partition blob is found missing, the
  partitions are provisioned again, at most every
  ``REPROVISION_INTERVAL`` seconds.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NamedTuple

from . import events
from ._bus import EventBus
from ._errors import SharedCapacityNotProvisionedError, WrongOrderError
from ._lease import LeaseManager
from ._lease_loop import _Call, _ErrorThrottle, _LeasePool, _Outbox, _Result
from ._validate import check_int, check_seconds

__all__ = ["LeaseHold", "SharedResource"]

logger = logging.getLogger(__name__)

#: Most partitions a SharedResource provisions; more shared capacity than
#: ``MAX_PARTITIONS * factor`` is not used.
MAX_PARTITIONS: Final = 500
#: Seconds between the end of a local hold and the earliest moment the
#: lease can expire on the server (request sent time + lease duration). It
#: covers clock-rate differences and the server rounding lease times.
SAFETY_MARGIN: Final = 1.0
#: A lease response that leaves less than this many seconds of hold is not
#: counted: the lease is released instead.
MIN_HOLD: Final = 1.0
#: After the first storage error, at most one summary ``error`` event (and
#: log line) per this many seconds reports the errors that followed.
ERROR_SUMMARY_INTERVAL: Final = 10.0
#: Lease durations that Azure Blob Storage accepts, in whole seconds.
MIN_LEASE_DURATION: Final = 15.0
MAX_LEASE_DURATION: Final = 60.0

# Error codes of a LeaseStoreError that are normal races, not faults: the
# lease ended or changed hands between our decision and the request.
_BENIGN_ERROR_CODES: Final = frozenset(
    {
        "LeaseNotPresentWithLeaseOperation",
        "LeaseIdMismatchWithLeaseOperation",
        "LeaseIsBrokenAndCannotBeRenewed",
        "LeaseAlreadyBroken",
    }
)

# Error codes that mean the container or a partition blob is gone, for
# example deleted, or lost by an emulator restart: provisioning again fixes it.
_MISSING_ERROR_CODES: Final = frozenset({"ContainerNotFound", "BlobNotFound"})
#: Minimum seconds between two provisionings after the container or a
#: partition blob was found missing.
REPROVISION_INTERVAL: Final = 10.0

# Kinds of lease store calls.
_LIST: Final = "list"
_ACQUIRE: Final = "acquire"
_RENEW: Final = "renew"
_RELEASE: Final = "release"
_BREAK: Final = "break"
_PROVISION: Final = "provision"

# Lifecycle states.
_NEW: Final = "new"
_STARTED: Final = "started"
_STOPPING: Final = "stopping"
_STOPPED: Final = "stopped"


class LeaseHold(NamedTuple):
    """The clock interval during which one partition counts toward capacity.

    Times are seconds on the SharedResource's clock (``time.monotonic`` by
    default, which all processes on one machine share). In an ``allocated``
    event and in ``holds()``, ``counted_until`` is the current deadline,
    which renewals push later. In a ``released`` event it is the moment
    counting ended.
    """

    partition: int
    counted_from: float
    counted_until: float


@dataclass
class _Hold:
    counted_from: float
    hold_until: float
    renew_due: float
    # When the last successful acquire or renew response was applied.
    confirmed_at: float


def _default_owner() -> str:
    host = socket.gethostname().encode("ascii", "ignore").decode()[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _check_owner(owner: Any) -> str:
    if not isinstance(owner, str):
        raise TypeError(f"owner must be a str, got {owner!r}")
    if not (0 < len(owner) <= 128 and owner.isascii() and owner.isprintable()):
        raise ValueError(
            f"owner must be 1 to 128 printable ASCII characters, got {owner!r}"
        )
    return owner


class SharedResource:
    """A rate limiter whose capacity is reserved capacity plus partitions of
    shared capacity leased through a LeaseManager.

    ``capacity`` is ``reserved_capacity`` plus ``factor`` for each partition
    counted now, never more than ``max_capacity``. Shared capacity needs a
    ``lease_manager``; reserved capacity alone needs none. The module
    docstring explains how leases are held, renewed and shared fairly.

    Args:
        reserved_capacity: capacity this instance always has.
        shared_capacity: capacity shared with every instance on the same
            lease store; cut into ``ceil(shared_capacity / factor)``
            partitions, at most ``MAX_PARTITIONS``.
        lease_manager: the lease store; required when ``shared_capacity``
            is above 0. The caller keeps ownership and closes it.
        factor: capacity per partition.
        max_interval: most seconds between two control steps.
        lease_duration: seconds each lease lasts on the server, 15 to 60.
        max_parallel: threads that run lease calls.
        owner: name recorded on leased partitions; unique per instance.
        release_delay: seconds a partition stays held after demand for it
            falls, so brief dips do not release and take it again.
        usage_window: seconds a lease is kept after its partition stops
            counting, before it is released; the length of the Batcher's
            capacity window.
        clock: monotonic clock in seconds.

    Thread-safe. Events are delivered on the control thread
    (``batcher-shared-capacity``), on a lease thread when partitions are
    provisioned again, or on the caller's thread for ``target``,
    ``start()``, ``stop()`` and the setters.
    """

    def __init__(
        self,
        reserved_capacity: int = 0,
        shared_capacity: int = 0,
        lease_manager: LeaseManager | None = None,
        factor: int = 1,
        max_interval: float = 0.5,
        *,
        lease_duration: float = 15.0,
        max_parallel: int = 8,
        owner: str | None = None,
        release_delay: float = 1.0,
        usage_window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        reserved = check_int("reserved_capacity", reserved_capacity)
        shared = check_int("shared_capacity", shared_capacity)
        if lease_manager is not None and not isinstance(lease_manager, LeaseManager):
            raise TypeError(
                f"lease_manager must implement batcher.LeaseManager, "
                f"got {lease_manager!r}"
            )
        self._factor = check_int("factor", factor, minimum=1)
        self._max_interval = check_seconds("max_interval", max_interval)
        duration = check_seconds("lease_duration", lease_duration)
        if not MIN_LEASE_DURATION <= duration <= MAX_LEASE_DURATION or duration != int(
            duration
        ):
            raise ValueError(
                f"lease_duration must be a whole number of seconds from "
                f"{MIN_LEASE_DURATION:g} to {MAX_LEASE_DURATION:g}, "
                f"got {lease_duration!r}"
            )
        self._lease_duration = duration
        self._max_parallel = check_int("max_parallel", max_parallel, minimum=1)
        if self._max_parallel > MAX_PARTITIONS:
            # More threads than partitions would never have work.
            raise ValueError(
                f"max_parallel must be at most {MAX_PARTITIONS}, got {max_parallel!r}"
            )
        self._owner = _default_owner() if owner is None else _check_owner(owner)
        self._release_delay = check_seconds(
            "release_delay", release_delay, allow_zero=True
        )
        self._usage_window = check_seconds(
            "usage_window", usage_window, allow_zero=True
        )
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        if shared > 0 and lease_manager is None:
            raise SharedCapacityNotProvisionedError(
                f"shared_capacity={shared} needs a lease_manager to provision it"
            )
        self._lease_manager = lease_manager
        self._clock = clock
        self._renew_period = duration / 2
        # One lease id for every partition: acquiring a partition this
        # instance still holds on the server then succeeds as a renewal.
        self._lease_id = str(uuid.uuid4())
        self._events = EventBus()

        # Guards every attribute below. Held only for memory updates: never
        # across a lease store call, an event emit or a log call.
        self._lock = threading.Lock()
        self._state = _NEW
        self._reserved = reserved
        self._shared = shared
        self._partition_count = self._partitions_for(shared)
        self._target_partitions = 0
        # (time, target partitions) from give_me over the last release_delay.
        self._target_history: deque[tuple[float, int]] = deque()
        self._holds: dict[int, _Hold] = {}
        # Partitions no longer counted whose lease is kept until their
        # capacity has left the usage window: index -> (release at, quiet).
        self._draining: dict[int, tuple[float, bool]] = {}
        # Partitions with an acquire, renew or release in flight, by kind.
        # One call per partition at a time, so a release never overtakes
        # an acquire of the same partition.
        self._busy: dict[int, str] = {}
        self._breaks_in_flight: set[int] = set()
        # Partitions this instance broke, with when, until they are free.
        self._broken_by_me: dict[int, float] = {}
        self._listing = False
        self._next_list_at = -math.inf
        # Set when a request found the container or a blob missing.
        self._missing = False
        self._provisioning = False
        self._next_provision_at = -math.inf
        self._list_interval = self._max_interval
        # Until then, keep at most the fair share: a lease of ours was broken.
        self._yield_until = -math.inf
        self._results: list[_Result] = []
        self._last_capacity: int | None = None
        self._requests = 0
        self._errors = _ErrorThrottle(ERROR_SUMMARY_INTERVAL)

        # Set to make the control thread run a step now.
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: _LeasePool | None = None

    # Public properties.

    @property
    def capacity(self) -> int:
        """Capacity per second now: reserved plus the counted partitions."""
        with self._lock:
            return self._capacity_at(self._clock())

    @property
    def max_capacity(self) -> int:
        """Capacity with every partition counted."""
        # put() reads this for every operation, so it takes no lock: each
        # int read is atomic, and a setter racing with it only moves the
        # bound that one put() is checked against.
        return self._reserved + self._usable_shared()

    @property
    def events(self) -> EventBus:
        """Event bus of this rate limiter."""
        return self._events

    @property
    def owner(self) -> str:
        """Name recorded on the partitions this instance leases."""
        return self._owner

    @property
    def partition_count(self) -> int:
        """Partitions that shared capacity is cut into."""
        with self._lock:
            return self._partition_count

    @property
    def storage_requests(self) -> int:
        """Lease store requests sent so far, provisioning excluded."""
        with self._lock:
            return self._requests

    @property
    def storage_errors(self) -> int:
        """Lease store requests that failed for a reason other than contention."""
        with self._lock:
            return self._errors.total

    def holds(self) -> dict[int, LeaseHold]:
        """Return the partitions counted now with their current deadlines."""
        with self._lock:
            now = self._clock()
            return {
                index: LeaseHold(index, hold.counted_from, hold.hold_until)
                for index, hold in self._holds.items()
                if hold.counted_from <= now < hold.hold_until
            }

    # Public methods.

    def give_me(self, target: int) -> None:
        """Ask for ``target`` capacity: reserved capacity first, then enough
        partitions to cover the rest, capped at the partitions that exist.

        Emits ``target`` with the number of partitions wanted. A rise wakes
        the control thread at once.
        """
        target = check_int("target", target)
        with self._lock:
            now = self._clock()
            needed = max(target - self._reserved, 0)
            wanted = min(-(-needed // self._factor), self._partition_count)
            rose = wanted > self._target_partitions
            self._target_partitions = wanted
            self._target_history.append((now, wanted))
            self._trim_history(now)
            if rose:
                self._next_list_at = -math.inf
                self._list_interval = self._max_interval
        self._events.emit(events.TARGET, wanted)
        if rose:
            self._wake.set()

    def set_reserved_capacity(self, reserved_capacity: int) -> None:
        """Change the reserved capacity; emits ``capacity`` if it changed."""
        reserved = check_int("reserved_capacity", reserved_capacity)
        out = _Outbox()
        with self._lock:
            self._reserved = reserved
            self._note_capacity(self._clock(), out)
        self._publish(out)

    def set_shared_capacity(self, shared_capacity: int) -> None:
        """Change the shared capacity, provisioning any new partitions.

        Partitions beyond the new count are released at the next step.

        Raises:
            SharedCapacityNotProvisionedError: there is no lease manager.
            LeaseStoreError: provisioning failed; nothing changed.
        """
        shared = check_int("shared_capacity", shared_capacity)
        if self._lease_manager is None:
            raise SharedCapacityNotProvisionedError(
                f"shared_capacity={shared} needs a lease_manager to provision it"
            )
        count = self._partitions_for(shared)
        with self._lock:
            grows = count > self._partition_count and self._state == _STARTED
        if grows:
            self._provision(shared, count)
        out = _Outbox()
        with self._lock:
            self._shared = shared
            self._partition_count = count
            self._target_partitions = min(self._target_partitions, count)
            self._note_capacity(self._clock(), out)
        self._publish(out)
        self._wake.set()

    def start(self) -> None:
        """Provision the partitions, then start the control thread and the
        lease threads.

        Raises:
            WrongOrderError: already started or stopped.
            LeaseStoreError: provisioning failed; the instance stays new
                and ``start()`` may be called again.
        """
        with self._lock:
            if self._state != _NEW:
                raise WrongOrderError(
                    f"start() on a SharedResource that is {self._state}"
                )
            self._state = _STARTED
            shared = self._shared
            count = self._partition_count
        if self._lease_manager is not None:
            try:
                if shared > 0:
                    self._provision(shared, count)
            except BaseException:
                with self._lock:
                    self._state = _NEW
                raise
        out = _Outbox()
        with self._lock:
            self._note_capacity(self._clock(), out, always=True)
        self._publish(out)
        if self._lease_manager is not None:
            self._pool = _LeasePool(self._max_parallel)
            self._thread = threading.Thread(
                target=self._run, name="batcher-shared-capacity", daemon=True
            )
            self._thread.start()
        logger.info("shared resource %s started with %d partitions", self._owner, count)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop counting every lease, release them all in parallel, emit
        ``shutdown`` and join every thread; later calls do nothing.

        ``timeout`` bounds the wait for lease calls still in flight.
        """
        timeout = check_seconds("timeout", timeout, allow_zero=True)
        with self._lock:
            if self._state in (_STOPPING, _STOPPED):
                return
            self._state = _STOPPING
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("thread %s did not stop in time", self._thread.name)

        self._finish()
        self._wait_for_drained(timeout)
        if self._pool is not None:
            self._pool.shutdown(timeout)
            self._pool = None
        # Without the pool, releases run on this thread and queue results,
        # so a few rounds apply every one of them.
        for _ in range(3):
            self._finish()
        out = _Outbox()
        with self._lock:
            self._state = _STOPPED
            self._errors.flush(self._clock(), out, force=True)
        self._publish(out)
        self._events.emit(events.SHUTDOWN)
        logger.info("shared resource %s stopped", self._owner)

    def _finish(self) -> None:
        """Apply finished calls, stop counting every hold and release the
        leases whose capacity has left the usage window."""
        out = _Outbox()
        with self._lock:
            now = self._clock()
            results, self._results = self._results, []
            for result in results:
                self._apply(result, now, out)
            for index in sorted(self._holds):
                self._drop(index, now, out, quiet=False)
            self._release_drained(now, out)
            self._note_capacity(now, out)
        self._publish(out)

    def _wait_for_drained(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until the draining leases are
        due, then release them all."""
        with self._lock:
            last = max((at for at, _ in self._draining.values()), default=None)
            remaining = 0.0 if last is None else last - self._clock()
        if remaining > 0:
            threading.Event().wait(min(remaining, timeout))
        out = _Outbox()
        with self._lock:
            self._release_drained(self._clock(), out, force=True)
        self._publish(out)

    def step(self) -> float:
        """Run one control step and return the seconds until the next is due.

        Applies the results of finished lease calls, stops counting expired
        holds, then decides which leases to renew, release, acquire or
        break. The control thread calls it. On an instance that was not
        started, lease calls run on the calling thread and the step repeats
        until every result is applied, so tests can drive it with a fake
        clock.
        """
        rounds = 0
        while True:
            out = _Outbox()
            with self._lock:
                now = self._clock()
                self._expire(now, out)
                results, self._results = self._results, []
                for result in results:
                    self._apply(result, now, out)
                if self._active():
                    self._plan(now, out)
                self._errors.flush(now, out)
                self._note_capacity(now, out)
                delay = self._next_delay(now)
            self._publish(out)
            rounds += 1
            with self._lock:
                again = bool(self._results) and self._pool is None and rounds < 16
            if not again:
                return delay

    def __enter__(self) -> SharedResource:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"SharedResource(reserved_capacity={self._reserved}, "
            f"shared_capacity={self._shared}, factor={self._factor}, "
            f"owner={self._owner!r})"
        )

    # Capacity arithmetic; callers hold the lock.

    def _active(self) -> bool:
        return self._state in (_NEW, _STARTED)

    def _partitions_for(self, shared: int) -> int:
        return min(-(-shared // self._factor), MAX_PARTITIONS)

    def _usable_shared(self) -> int:
        return min(self._shared, MAX_PARTITIONS * self._factor)

    def _capacity_at(self, now: float) -> int:
        counted = sum(
            1
            for hold in self._holds.values()
            if hold.counted_from <= now < hold.hold_until
        )
        return self._reserved + min(counted * self._factor, self._usable_shared())

    def _note_capacity(self, now: float, out: _Outbox, *, always: bool = False) -> None:
        capacity = self._capacity_at(now)
        if always or capacity != self._last_capacity:
            self._last_capacity = capacity
            out.emit(events.CAPACITY, capacity)

    def _trim_history(self, now: float) -> None:
        history = self._target_history
        while len(history) > 1 and history[0][0] <= now - self._release_delay:
            history.popleft()

    def _kept_partitions(self, now: float) -> int:
        """Return how many partitions to keep: the most wanted within
        ``release_delay`` seconds, capped at the partitions that exist."""
        self._trim_history(now)
        recent = [
            wanted
            for t, wanted in self._target_history
            if t > now - self._release_delay
        ]
        return min(max([self._target_partitions, *recent]), self._partition_count)

    # The control step; every method here runs with the lock held.

    def _expire(self, now: float, out: _Outbox) -> None:
        for index in [i for i, h in self._holds.items() if h.hold_until <= now]:
            hold = self._holds.pop(index)
            out.emit(
                events.RELEASED,
                index,
                None,
                LeaseHold(index, hold.counted_from, hold.hold_until),
            )
            out.log(
                logging.INFO,
                "lease on partition %d lapsed before it was renewed",
                index,
            )

    def _drop(self, index: int, now: float, out: _Outbox, *, quiet: bool) -> None:
        """Stop counting partition ``index`` now and release its lease once
        its capacity has left the usage window."""
        hold = self._holds.pop(index)
        out.emit(
            events.RELEASED,
            index,
            None,
            LeaseHold(index, hold.counted_from, min(now, hold.hold_until)),
        )
        if index not in self._busy:
            self._draining[index] = (now + self._usage_window, quiet)
        self._release_drained(now, out)

    def _release_drained(
        self, now: float, out: _Outbox, *, force: bool = False
    ) -> None:
        """Release the draining leases that are due, or all with ``force``."""
        for index, (release_at, quiet) in list(self._draining.items()):
            if (release_at <= now or force) and index not in self._busy:
                del self._draining[index]
                self._busy[index] = _RELEASE
                out.calls.append(_Call(_RELEASE, index, quiet=quiet))

    def _apply(self, result: _Result, now: float, out: _Outbox) -> None:
        call = result.call
        if call.kind == _PROVISION:
            self._provisioning = False
            if result.error is None:
                self._missing = False
            else:
                self._report_error(now, call, result.error, out)
            return
        if call.kind == _LIST:
            self._listing = False
            if result.error is not None:
                self._report_error(now, call, result.error, out)
            elif result.states is not None and self._active():
                self._apply_listing(result, now, out)
            return
        if call.kind == _BREAK:
            self._breaks_in_flight.discard(call.index)
            if result.error is None:
                self._broken_by_me[call.index] = now
            else:
                self._report_error(now, call, result.error, out)
            return
        self._busy.pop(call.index, None)
        if result.error is not None:
            if call.kind == _RENEW and call.index in self._holds:
                # Retry soon; the hold still ends on time if storage stays away.
                self._holds[call.index].renew_due = now + min(1.0, self._max_interval)
            self._report_error(now, call, result.error, out)
        elif call.kind == _RELEASE:
            out.log(logging.DEBUG, "released partition %d", call.index)
        elif result.ok:
            self._apply_gain(result, now, out)
        elif call.kind == _ACQUIRE:
            out.emit(events.FAILED, call.index)
        else:
            self._apply_lost_renewal(call.index, now, out)

    def _apply_gain(self, result: _Result, now: float, out: _Outbox) -> None:
        index = result.call.index
        hold_until = result.sent_at + self._lease_duration - SAFETY_MARGIN
        too_late = hold_until - now < MIN_HOLD
        if not self._active() or index >= self._partition_count or too_late:
            if too_late:
                out.log(
                    logging.WARNING,
                    "lease on partition %d answered %.3f s after the request, "
                    "too late to count; releasing it",
                    index,
                    result.received_at - result.sent_at,
                )
            if index in self._holds:
                self._drop(index, now, out, quiet=True)
            else:
                self._busy[index] = _RELEASE
                out.calls.append(_Call(_RELEASE, index, quiet=True))
            return
        if index in self._draining:
            # A renewal sent before the partition stopped counting.
            return
        renew_due = result.sent_at + self._renew_period
        hold = self._holds.get(index)
        if hold is not None:
            hold.hold_until = hold_until
            hold.renew_due = renew_due
            hold.confirmed_at = now
            out.log(logging.DEBUG, "renewed partition %d until %.3f", index, hold_until)
            return
        self._holds[index] = _Hold(now, hold_until, renew_due, now)
        self._broken_by_me.pop(index, None)
        out.emit(events.ALLOCATED, index, None, LeaseHold(index, now, hold_until))
        out.log(logging.INFO, "leased partition %d", index)

    def _apply_lost_renewal(self, index: int, now: float, out: _Outbox) -> None:
        # The lease was broken or taken: stop counting it, and release it so
        # that a waiter can take a broken lease at once.
        out.log(logging.INFO, "lost the lease on partition %d at renewal", index)
        self._yield_until = now + self._lease_duration
        if index in self._holds:
            self._drop(index, now, out, quiet=True)
        elif index not in self._busy:
            self._busy[index] = _RELEASE
            out.calls.append(_Call(_RELEASE, index, quiet=True))

    def _apply_listing(self, result: _Result, now: float, out: _Outbox) -> None:
        states = [s for s in result.states or () if s.index < self._partition_count]
        me = self._owner
        for state in states:
            hold = self._holds.get(state.index)
            if hold is None:
                continue
            if not state.leased:
                if hold.confirmed_at < result.sent_at:
                    # Storage that lost a confirmed lease (an emulator
                    # restarted from an older save, say) lets others take it.
                    out.log(
                        logging.WARNING,
                        "partition %d is not leased in storage while counted "
                        "here; no longer counting it",
                        state.index,
                    )
                    self._drop(state.index, now, out, quiet=True)
                continue
            if state.breaking and state.owner == me:
                out.log(
                    logging.INFO,
                    "lease on partition %d is being broken; yielding it",
                    state.index,
                )
                self._yield_until = now + self._lease_duration
                self._drop(state.index, now, out, quiet=True)
            elif state.owner != me and hold.confirmed_at < result.sent_at:
                out.log(
                    logging.WARNING,
                    "partition %d is leased by %r while counted here; "
                    "no longer counting it",
                    state.index,
                    state.owner,
                )
                self._drop(state.index, now, out, quiet=True)

        acquiring = sum(1 for kind in self._busy.values() if kind == _ACQUIRE)
        others = Counter(
            s.owner
            for s in states
            if s.leased and not s.breaking and s.owner is not None and s.owner != me
        )
        broken_by_others = any(
            s.breaking and s.index not in self._broken_by_me for s in states
        )
        # An instance that holds nothing is not seen in the listing, but a
        # lease that someone else is breaking shows that one is waiting.
        wanting = len(others) + 1 + (1 if broken_by_others else 0)
        fair = self._partition_count // wanting
        limit = self._target_partitions
        if now < self._yield_until:
            limit = min(limit, self._partition_count // max(wanting, 2))

        free = [
            s.index
            for s in states
            if s.index not in self._holds
            and s.index not in self._busy
            and (not s.leased or (s.owner == me and not s.breaking))
        ]
        room = limit - len(self._holds) - acquiring
        taken = random.sample(free, min(max(room, 0), len(free)))
        for index in taken:
            self._busy[index] = _ACQUIRE
            out.calls.append(_Call(_ACQUIRE, index))

        breaking = {s.index for s in states if s.leased and s.breaking}
        self._broken_by_me = {
            i: t for i, t in self._broken_by_me.items() if i in breaking
        }
        held = len(self._holds) + acquiring + len(taken)
        shortfall = (
            min(self._target_partitions, fair)
            - held
            - len(self._broken_by_me)
            - len(self._breaks_in_flight)
        )
        broke = 0
        for owner, count in others.most_common():
            if shortfall <= 0 or count <= fair:
                break
            victims = [
                s.index
                for s in states
                if s.owner == owner
                and s.leased
                and not s.breaking
                and s.index not in self._breaks_in_flight
            ]
            for index in random.sample(
                victims, min(count - fair, shortfall, len(victims))
            ):
                self._breaks_in_flight.add(index)
                out.calls.append(_Call(_BREAK, index))
                broke += 1
                shortfall -= 1
        if broke:
            out.log(
                logging.INFO,
                "holding %d of %d partitions with a fair share of %d; "
                "breaking %d leases",
                held,
                self._partition_count,
                fair,
                broke,
            )

        if taken or broke or self._broken_by_me:
            self._list_interval = self._max_interval
        else:
            self._list_interval = min(self._list_interval * 2, 4 * self._max_interval)
        self._next_list_at = now + self._list_interval

    def _plan(self, now: float, out: _Outbox) -> None:
        self._release_drained(now, out)
        keep = self._kept_partitions(now)
        idle = sorted(
            (i for i in self._holds if i not in self._busy),
            key=lambda i: (i < self._partition_count, self._holds[i].hold_until),
        )
        excess = len(self._holds) - keep
        for index in idle:
            if excess <= 0 and index < self._partition_count:
                break
            out.log(logging.INFO, "releasing partition %d: demand fell", index)
            self._drop(index, now, out, quiet=False)
            excess -= 1

        for index, hold in self._holds.items():
            if index not in self._busy and hold.renew_due <= now:
                self._busy[index] = _RENEW
                out.calls.append(_Call(_RENEW, index))

        if self._missing and not self._provisioning and now >= self._next_provision_at:
            self._provisioning = True
            self._next_provision_at = now + REPROVISION_INTERVAL
            out.calls.append(_Call(_PROVISION))

        if self._unmet() > 0 and not self._listing and now >= self._next_list_at:
            self._listing = True
            self._next_list_at = now + self._list_interval
            out.calls.append(_Call(_LIST))

    def _unmet(self) -> int:
        acquiring = sum(1 for kind in self._busy.values() if kind == _ACQUIRE)
        return self._target_partitions - len(self._holds) - acquiring

    def _next_delay(self, now: float) -> float:
        deadline = now + self._max_interval
        for index, hold in self._holds.items():
            deadline = min(deadline, hold.hold_until)
            if index not in self._busy:
                deadline = min(deadline, hold.renew_due)
        if self._unmet() > 0 and not self._listing:
            deadline = min(deadline, self._next_list_at)
        if len(self._holds) > self._target_partitions and self._target_history:
            release_at = self._target_history[0][0] + self._release_delay
            if release_at > now:
                deadline = min(deadline, release_at)
        for release_at, _ in self._draining.values():
            deadline = min(deadline, release_at)
        deadline = min(deadline, self._errors.next_report())
        return max(deadline - now, 0.001)

    def _report_error(
        self, now: float, call: _Call, error: Exception, out: _Outbox
    ) -> None:
        what = call.kind if call.index < 0 else f"{call.kind} of partition {call.index}"
        code = getattr(error, "error_code", None)
        if code in _MISSING_ERROR_CODES:
            self._missing = True
        if call.quiet or code in _BENIGN_ERROR_CODES:
            out.log(logging.DEBUG, "%s failed: %s", what, error)
            return
        self._errors.record(now, f"lease store {what} failed: {error}", error, out)

    # Running lease calls.

    def _publish(self, out: _Outbox) -> None:
        for level, message, args in out.logs:
            logger.log(level, message, *args)
        for name, val, msg, meta in out.events:
            self._events.emit(name, val, msg, meta)
        pool = self._pool
        for call in out.calls:
            if pool is None:
                self._call(call)
            else:
                pool.submit(functools.partial(self._call, call))

    def _call(self, call: _Call) -> None:
        """Send one lease store request and queue its result for the step."""
        manager = self._lease_manager
        assert manager is not None
        with self._lock:
            count = self._partition_count
        sent_at = self._clock()
        result = _Result(call, sent_at, sent_at)
        try:
            if call.kind == _LIST:
                result.states = manager.partitions(count)
            elif call.kind == _ACQUIRE:
                result.ok = manager.acquire(
                    call.index, self._lease_id, self._lease_duration, self._owner
                )
            elif call.kind == _RENEW:
                result.ok = manager.renew(
                    call.index, self._lease_id, self._lease_duration
                )
            elif call.kind == _RELEASE:
                manager.release(call.index, self._lease_id)
            elif call.kind == _BREAK:
                manager.break_lease(call.index)
            else:
                self._events.emit(events.PROVISION_START, count)
                manager.provision(count, self._events)
                self._events.emit(events.PROVISION_DONE, count)
        except Exception as error:
            result.error = error
        result.received_at = self._clock()
        with self._lock:
            if call.kind != _PROVISION:
                self._requests += 1
            self._results.append(result)
        self._wake.set()

    def _provision(self, shared: int, count: int) -> None:
        manager = self._lease_manager
        assert manager is not None
        if -(-shared // self._factor) > MAX_PARTITIONS:
            message = (
                f"shared_capacity={shared} with factor={self._factor} needs "
                f"{-(-shared // self._factor)} partitions; only {MAX_PARTITIONS} "
                f"are provisioned, so raise factor to use all of it"
            )
            logger.error("%s", message)
            self._events.emit(events.ERROR, 0, message, None)
        self._events.emit(events.PROVISION_START, count)
        try:
            manager.provision(count, self._events)
        except Exception as error:
            self._events.emit(events.ERROR, 1, f"provisioning failed: {error}", error)
            raise
        self._events.emit(events.PROVISION_DONE, count)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                delay = self.step()
            except Exception:
                logger.exception("shared capacity step failed")
                delay = self._max_interval
            self._wake.wait(min(delay, self._max_interval))
