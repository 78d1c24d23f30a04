"""An in-memory LeaseManager with a settable clock and fault injection.

It follows the lease rules of Azure Blob Storage that SharedResource relies
on: a lease lasts ``duration`` seconds from the request, the same lease id
may acquire again, a broken lease cannot be renewed and ends with its term,
and only the holder may release.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from batcher import events
from batcher._bus import EventBus
from batcher._errors import LeaseStoreError
from batcher._lease import PartitionState

__all__ = ["FakeClock", "FakeLeaseManager"]


class FakeClock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Lease:
    lease_id: str
    expires_at: float
    breaking: bool = False


class FakeLeaseManager:
    """Partitions in memory, on the clock of the SharedResource under test.

    Set ``fault`` to make every request raise it. Set ``latency`` to move
    the clock forward by that many seconds after each request named in
    ``slow_methods`` takes effect, which looks to the caller like a slow
    response. ``calls`` records
    ``(method, index)`` for every request.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.fault: Exception | None = None
        self.latency = 0.0
        self.slow_methods = {"acquire", "renew", "release", "break_lease", "partitions"}
        self.container_exists = False
        self.blobs: set[int] = set()
        self.calls: list[tuple[str, int]] = []
        self.owners: dict[int, str] = {}
        self._leases: dict[int, _Lease] = {}
        self._lock = threading.Lock()

    @property
    def request_count(self) -> int:
        return len(self.calls)

    def count_calls(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def holder(self, index: int) -> str | None:
        """Return the lease id holding ``index`` now, or None."""
        lease = self._active(index)
        return None if lease is None else lease.lease_id

    def expires_at(self, index: int) -> float | None:
        lease = self._active(index)
        return None if lease is None else lease.expires_at

    def provision(self, count: int, events_bus: EventBus) -> None:
        self._request("provision", -1)
        if self.container_exists:
            events_bus.emit(events.VERIFIED_CONTAINER, 0, "memory://container")
        else:
            self.container_exists = True
            events_bus.emit(events.CREATED_CONTAINER, 0, "memory://container")
        for index in range(count):
            if index in self.blobs:
                events_bus.emit(events.VERIFIED_BLOB, index)
            else:
                self.blobs.add(index)
                events_bus.emit(events.CREATED_BLOB, index)

    def acquire(self, index: int, lease_id: str, duration: float, owner: str) -> bool:
        with self._lock:
            self._request("acquire", index)
            lease = self._active(index)
            if lease is not None and (lease.breaking or lease.lease_id != lease_id):
                result = False
            else:
                self._leases[index] = _Lease(lease_id, self.clock() + duration)
                self.owners[index] = owner
                result = True
        self._respond("acquire")
        return result

    def renew(self, index: int, lease_id: str, duration: float) -> bool:
        with self._lock:
            self._request("renew", index)
            lease = self._leases.get(index)
            if lease is None or lease.lease_id != lease_id or lease.breaking:
                result = False
            else:
                lease.expires_at = self.clock() + duration
                result = True
        self._respond("renew")
        return result

    def release(self, index: int, lease_id: str) -> None:
        with self._lock:
            self._request("release", index)
            lease = self._leases.get(index)
            if lease is None or lease.lease_id != lease_id:
                raise LeaseStoreError(
                    f"release of partition {index} with a lease id that does not hold it",
                    status_code=409,
                    error_code="LeaseIdMismatchWithLeaseOperation",
                )
            del self._leases[index]
        self._respond("release")

    def break_lease(self, index: int) -> None:
        with self._lock:
            self._request("break_lease", index)
            lease = self._active(index)
            if lease is None:
                raise LeaseStoreError(
                    f"break of partition {index}, which has no lease",
                    status_code=409,
                    error_code="LeaseNotPresentWithLeaseOperation",
                )
            lease.breaking = True
        self._respond("break_lease")

    def partitions(self, count: int) -> list[PartitionState]:
        with self._lock:
            self._request("partitions", -1)
            states = []
            for index in range(count):
                lease = self._active(index)
                states.append(
                    PartitionState(
                        index,
                        lease is not None,
                        lease is not None and lease.breaking,
                        self.owners.get(index),
                    )
                )
        self._respond("partitions")
        return states

    def close(self) -> None:
        pass

    def _request(self, method: str, index: int) -> None:
        self.calls.append((method, index))
        if self.fault is not None:
            raise self.fault

    def _respond(self, method: str) -> None:
        if method in self.slow_methods and isinstance(self.clock, FakeClock):
            self.clock.advance(self.latency)

    def _active(self, index: int) -> _Lease | None:
        lease = self._leases.get(index)
        if lease is None or self.clock() >= lease.expires_at:
            return None
        return lease
