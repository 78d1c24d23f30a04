"""Send the events of a Batcher, a rate limiter or any event bus to logging."""

from __future__ import annotations

import logging
from typing import Final

from . import events
from ._bus import EventBus, Subscription
from .events import Event

__all__ = ["log_events"]

# Level roles, resolved to real levels per call of log_events().
_LIFECYCLE: Final = "lifecycle"
_DETAIL: Final = "detail"
_PROBLEM: Final = "problem"
_ERROR: Final = "error"

# For each known event: its level role and a %-style message whose arguments
# are the source label, then ``val`` when the format has a %d, then ``msg``
# when it has a second %s. ``metadata`` is never logged, because for the
# ``batch`` event it contains the operations with their private payloads.
_FORMATS: Final[dict[str, tuple[str, str]]] = {
    events.SHUTDOWN: (_LIFECYCLE, "%s shut down; %d operations returned unprocessed"),
    events.ERROR: (_ERROR, "%s survived an error: %s"),
    events.PAUSE: (_LIFECYCLE, "%s paused for %d ms"),
    events.RESUME: (_LIFECYCLE, "%s resumed"),
    events.AUDIT_FAIL: (_PROBLEM, "%s audit failed: %s"),
    events.AUDIT_PASS: (_DETAIL, "%s audit passed"),
    events.AUDIT_SKIP: (_DETAIL, "%s audit skipped"),
    events.REQUEST: (_DETAIL, "%s requested capacity %d"),
    events.FLUSH_START: (_DETAIL, "%s flush started"),
    events.FLUSH_DONE: (_DETAIL, "%s flush raised cost %d"),
    events.BATCH: (_DETAIL, "%s raised a batch of %d operations"),
    events.CAPACITY: (_LIFECYCLE, "%s capacity is now %d"),
    events.FAILED: (_DETAIL, "%s found partition %d leased by another instance"),
    events.RELEASED: (_LIFECYCLE, "%s released partition %d"),
    events.ALLOCATED: (_LIFECYCLE, "%s leased partition %d"),
    events.TARGET: (_DETAIL, "%s wants %d partitions"),
    events.PROVISION_START: (_LIFECYCLE, "%s provisioning %d partitions"),
    events.PROVISION_DONE: (_LIFECYCLE, "%s provisioned %d partitions"),
    events.CREATED_CONTAINER: (_LIFECYCLE, "%s created container %s"),
    events.VERIFIED_CONTAINER: (_DETAIL, "%s found container %s"),
    events.CREATED_BLOB: (_DETAIL, "%s created partition blob %d"),
    events.VERIFIED_BLOB: (_DETAIL, "%s found partition blob %d"),
}


def log_events(
    source: object,
    logger: logging.Logger | None = None,
    level: int = logging.INFO,
    *,
    detail_level: int = logging.DEBUG,
    problem_level: int = logging.WARNING,
    error_level: int = logging.WARNING,
    label: str | None = None,
) -> Subscription:
    """Log every event of ``source`` until the returned subscription is removed.

    ``source`` is an EventBus or any object with an ``events`` bus, such as a
    Batcher or a rate limiter. Lifecycle events (capacity, allocated,
    released, shutdown, pause, resume, provisioning) are logged at ``level``.
    Routine events (failed, target, request, flush, batch, audit pass and
    skip) and events with other names are logged at ``detail_level``,
    ``audit-fail`` at ``problem_level``, and ``error`` at ``error_level``
    with the exception from the event's metadata. The ``batch`` event's
    operations are never logged, because their payloads belong to the
    caller.

    Args:
        source: The event bus, or the object whose ``events`` to log.
        logger: Logger to send records to; ``batcher.events`` by default.
        level: Level of lifecycle events.
        detail_level: Level of routine events raised many times a second.
        problem_level: Level of ``audit-fail``.
        error_level: Level of ``error``.
        label: Text that starts each message to tell sources apart; the
            source's class name by default.

    Returns:
        The subscription; pass it to the bus's ``unsubscribe`` to stop.

    Raises:
        TypeError: ``source`` is neither an EventBus nor has one as ``events``.
    """
    bus = _event_bus_of(source)
    if logger is None:
        logger = logging.getLogger("batcher.events")
    if label is None:
        label = "events" if source is bus else type(source).__name__
    levels = {
        _LIFECYCLE: level,
        _DETAIL: detail_level,
        _PROBLEM: problem_level,
        _ERROR: error_level,
    }
    return bus.subscribe(_EventLogger(logger, levels, label))


def _event_bus_of(source: object) -> EventBus:
    if isinstance(source, EventBus):
        return source
    bus = getattr(source, "events", None)
    if isinstance(bus, EventBus):
        return bus
    raise TypeError(
        f"log_events() needs an EventBus or an object with an 'events' EventBus, "
        f"got {type(source).__name__}"
    )


class _EventLogger:
    """The listener that log_events() subscribes; runs on the emitting thread."""

    __slots__ = ("_logger", "_levels", "_label")

    def __init__(
        self, logger: logging.Logger, levels: dict[str, int], label: str
    ) -> None:
        self._logger = logger
        self._levels = levels
        self._label = label

    def __call__(self, event: Event) -> None:
        role, message = _FORMATS.get(event.name, (_DETAIL, ""))
        level = self._levels[role]
        if not self._logger.isEnabledFor(level):
            return
        if not message:
            self._logger.log(
                level,
                "%s event %s: val=%d msg=%s",
                self._label,
                event.name,
                event.val,
                event.msg,
            )
            return

        args: list[object] = [self._label]
        if "%d" in message:
            args.append(event.val)
        if message.count("%s") > 1:
            args.append(event.msg if event.msg is not None else "no details")
        exc_info = None
        if role == _ERROR and isinstance(event.metadata, BaseException):
            exc_info = event.metadata
        self._logger.log(level, message, *args, exc_info=exc_info)

    def __repr__(self) -> str:
        return f"<log_events listener {self._label!r}>"
