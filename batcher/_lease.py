"""The lease manager protocol: how a SharedResource reaches its lease store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._bus import EventBus

__all__ = ["LeaseManager", "PartitionState"]


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition as the lease store reports it at one moment."""

    index: int
    #: Whether some instance holds a lease on it (including one being broken).
    leased: bool
    #: Whether its lease is being broken and will end without renewal.
    breaking: bool
    #: The owner name recorded by the holder when it acquired, if any.
    owner: str | None


@runtime_checkable
class LeaseManager(Protocol):
    """A store of ``count`` partitions that instances lease exclusively.

    Durations are seconds. ``acquire`` and ``renew`` return False when the
    store reports that someone else holds the lease, which is normal under
    contention; every other failure raises. Implementations must be
    thread-safe, because a SharedResource calls them from several threads.
    """

    def provision(self, count: int, events: EventBus) -> None:
        """Create the store and partitions ``0 .. count-1`` if missing,
        emitting the provisioning events on ``events``."""
        ...

    def acquire(self, index: int, lease_id: str, duration: float, owner: str) -> bool:
        """Take a lease on partition ``index`` and record ``owner`` on it."""
        ...

    def renew(self, index: int, lease_id: str, duration: float) -> bool:
        """Extend a lease held with ``lease_id``; False if it was lost."""
        ...

    def release(self, index: int, lease_id: str) -> None:
        """Give up a lease so another instance can take it at once."""
        ...

    def break_lease(self, index: int) -> None:
        """Ask the holder of partition ``index`` to give it up: the lease
        cannot be renewed and ends when its current term runs out."""
        ...

    def partitions(self, count: int) -> list[PartitionState]:
        """Return the state of partitions ``0 .. count-1`` in one request."""
        ...

    def close(self) -> None:
        """Free network resources; the manager is not used afterwards."""
        ...
