"""Operations and the watchers that receive them in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._validate import check_flag, check_int, check_seconds

__all__ = ["Batch", "Operation", "Watcher"]


class Watcher:
    """The receiver of batches: a callback plus the limits that apply to it.

    ``callback(batch)`` runs on one of the Batcher's worker threads with a
    list of operations, in the order they were put. For ``max_attempts``
    and ``max_batch_size``, 0 means no limit. ``max_operation_time`` in
    seconds overrides the Batcher's value for this watcher's batches.
    """

    __slots__ = ("callback", "max_attempts", "max_batch_size", "max_operation_time")

    def __init__(
        self,
        callback: Callable[[Batch], object],
        max_attempts: int = 0,
        max_batch_size: int = 0,
        max_operation_time: float | None = None,
    ) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self.callback = callback
        self.max_attempts = check_int("max_attempts", max_attempts)
        self.max_batch_size = check_int("max_batch_size", max_batch_size)
        self.max_operation_time = (
            None
            if max_operation_time is None
            else check_seconds("max_operation_time", max_operation_time)
        )

    def __repr__(self) -> str:
        return (
            f"Watcher({self.callback!r}, max_attempts={self.max_attempts}, "
            f"max_batch_size={self.max_batch_size}, "
            f"max_operation_time={self.max_operation_time})"
        )


class Operation:
    """One unit of work: what it costs, what it carries, who receives it.

    ``cost`` is in the rate limiter's capacity units (for example request
    units). A batchable operation may share a batch with other operations
    of the same watcher; a non-batchable one is raised alone. ``attempt``
    counts how many times the operation was handed to its watcher.
    """

    __slots__ = ("watcher", "cost", "payload", "batchable", "attempt")

    def __init__(
        self,
        watcher: Watcher | None,
        cost: int,
        payload: Any = None,
        batchable: bool = False,
    ) -> None:
        if watcher is not None and not isinstance(watcher, Watcher):
            raise TypeError(f"watcher must be a Watcher or None, got {watcher!r}")
        self.watcher = watcher
        self.cost = check_int("cost", cost)
        self.payload = payload
        self.batchable = check_flag("batchable", batchable)
        self.attempt = 0

    def __repr__(self) -> str:
        # The payload is left out: it is the caller's data and may be large
        # or private.
        return (
            f"<Operation cost={self.cost} batchable={self.batchable} "
            f"attempt={self.attempt}>"
        )


class Batch(list[Operation]):
    """The operations that one callback receives, in the order they were put.

    A plain list with one more attribute: ``raised_at``, the Batcher clock's
    time (``time.monotonic()`` unless a clock was injected) of the flush that
    raised it. The capacity limits hold over these times, so a datastore
    that wants to check them can record ``raised_at`` with each write.
    """

    __slots__ = ("raised_at",)

    def __init__(self, operations: Iterable[Operation] = (), raised_at: float = 0.0):
        super().__init__(operations)
        self.raised_at = raised_at
