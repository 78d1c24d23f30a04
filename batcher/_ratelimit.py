"""The rate limiter protocol and the fixed-capacity rate limiter."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from . import events
from ._bus import EventBus
from ._errors import WrongOrderError
from ._validate import check_int

__all__ = ["ProvisionedResource", "RateLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """What a Batcher needs from a rate limiter.

    ``capacity`` is what may be spent per second now and ``max_capacity``
    the most it could ever be; both are in the same units as operation
    costs. The Batcher calls ``give_me(target)`` every capacity interval with
    the cost of everything it has not finished, from its capacity thread.
    Implementations must be thread-safe.
    """

    @property
    def capacity(self) -> int: ...

    @property
    def max_capacity(self) -> int: ...

    @property
    def events(self) -> EventBus: ...

    def give_me(self, target: int) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ProvisionedResource:
    """A rate limiter with one fixed capacity per second, for a datastore
    that one process uses alone."""

    def __init__(self, capacity: int) -> None:
        self._capacity = check_int("capacity", capacity)
        self._events = EventBus()
        # Guards _state, so start() and stop() run once each.
        self._state_lock = threading.Lock()
        self._state = "new"

    @property
    def capacity(self) -> int:
        """Capacity per second, fixed at construction."""
        return self._capacity

    @property
    def max_capacity(self) -> int:
        """The same as ``capacity``."""
        return self._capacity

    @property
    def events(self) -> EventBus:
        """Event bus: ``capacity`` at start, ``shutdown`` at stop."""
        return self._events

    def give_me(self, target: int) -> None:
        """Do nothing: the capacity is fixed."""

    def start(self) -> None:
        """Announce the capacity; raise WrongOrderError if already started."""
        with self._state_lock:
            if self._state != "new":
                raise WrongOrderError(f"ProvisionedResource is already {self._state}")
            self._state = "started"
        self._events.emit(events.CAPACITY, self._capacity)

    def stop(self) -> None:
        """Emit ``shutdown`` once; later calls do nothing."""
        with self._state_lock:
            if self._state == "stopped":
                return
            self._state = "stopped"
        self._events.emit(events.SHUTDOWN)

    def __repr__(self) -> str:
        return f"ProvisionedResource(capacity={self._capacity})"
