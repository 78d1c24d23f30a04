"""Exceptions raised by batcher.

BatcherError
 +-- OperationError             an operation that put() rejects
 |    +-- NoWatcherError
 |    +-- TooManyAttemptsError
 |    +-- TooExpensiveError
 +-- BufferFullError            put() with error_on_full_buffer and no room
 +-- LifecycleError             a call that the component's state does not allow
 |    +-- BatcherStoppedError
 |    +-- WrongOrderError
 +-- CapacityError              shared capacity settings
 |    +-- SharedCapacityNotProvisionedError
 +-- LeaseStoreError            a lease store request failed

Bad argument types and values raise the built-in TypeError and ValueError.
"""

from __future__ import annotations

__all__ = [
    "BatcherError",
    "BatcherStoppedError",
    "BufferFullError",
    "CapacityError",
    "LeaseStoreError",
    "LifecycleError",
    "NoWatcherError",
    "OperationError",
    "SharedCapacityNotProvisionedError",
    "TooExpensiveError",
    "TooManyAttemptsError",
    "WrongOrderError",
]


class BatcherError(Exception):
    """Base class of every error that batcher raises on purpose."""


class OperationError(BatcherError):
    """An operation that ``Batcher.put()`` rejects."""


class NoWatcherError(OperationError):
    """The operation has no watcher to hand its batch to."""


class TooManyAttemptsError(OperationError):
    """The operation reached its watcher's ``max_attempts``."""

    def __init__(self, attempt: int, max_attempts: int) -> None:
        super().__init__(
            f"operation was already attempted {attempt} times and its watcher "
            f"allows max_attempts={max_attempts}"
        )
        self.attempt = attempt
        self.max_attempts = max_attempts


class TooExpensiveError(OperationError):
    """The operation costs more than the rate limiter's maximum capacity."""

    def __init__(self, cost: int, max_capacity: int) -> None:
        super().__init__(
            f"operation cost {cost} exceeds the rate limiter's max_capacity "
            f"{max_capacity}, so it could never run"
        )
        self.cost = cost
        self.max_capacity = max_capacity


class BufferFullError(BatcherError):
    """The buffer is full and the Batcher was built with ``error_on_full_buffer``."""

    def __init__(self, buffer_size: int) -> None:
        super().__init__(
            f"buffer is full (buffer_size={buffer_size}); retry later or raise "
            "buffer_size"
        )
        self.buffer_size = buffer_size


class LifecycleError(BatcherError):
    """A call that the component's current state does not allow."""


class BatcherStoppedError(LifecycleError):
    """The Batcher was stopped and takes no more operations."""


class WrongOrderError(LifecycleError):
    """A call came in the wrong order, such as ``start()`` twice."""


class CapacityError(BatcherError):
    """A capacity setting that cannot be applied."""


class SharedCapacityNotProvisionedError(CapacityError):
    """Shared capacity was requested without a lease manager to provision it."""


class LeaseStoreError(BatcherError):
    """A request to the lease store failed for a reason other than contention.

    The message and attributes never contain credentials. ``status_code`` and
    ``error_code`` come from the store's response when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code
