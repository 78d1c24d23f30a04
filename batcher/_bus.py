"""The thread-safe observer bus behind every component's ``events``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .events import Event

__all__ = ["EventBus", "Listener", "Subscription"]

logger = logging.getLogger(__name__)

Listener = Callable[[Event], object]


class Subscription:
    """Handle returned by ``EventBus.subscribe``; pass it to ``unsubscribe``."""

    __slots__ = ("listener",)

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def __repr__(self) -> str:
        return f"Subscription({self.listener!r})"


class EventBus:
    """Deliver events to subscribed listeners.

    Listeners run synchronously on the thread that emits the event, in the
    order they subscribed. A listener that raises is logged and skipped, so
    it never breaks the emitter or the other listeners. Keep listeners fast:
    a slow listener delays the loop that emits.
    """

    def __init__(self) -> None:
        # Guards _subscriptions. emit() copies the tuple under the lock and
        # calls listeners after releasing it.
        self._subscriptions_lock = threading.Lock()
        self._subscriptions: tuple[Subscription, ...] = ()

    def subscribe(self, listener: Listener) -> Subscription:
        """Add ``listener`` and return the handle that removes it."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        subscription = Subscription(listener)
        with self._subscriptions_lock:
            self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a listener; removing one that is not subscribed does nothing."""
        with self._subscriptions_lock:
            self._subscriptions = tuple(
                s for s in self._subscriptions if s is not subscription
            )

    @property
    def has_listeners(self) -> bool:
        """Whether any listener is subscribed."""
        return bool(self._subscriptions)

    def emit(
        self, name: str, val: int = 0, msg: str | None = None, metadata: Any = None
    ) -> None:
        """Build an ``Event`` and deliver it to every listener."""
        subscriptions = self._subscriptions
        if not subscriptions:
            return
        event = Event(name, val, msg, metadata)
        for subscription in subscriptions:
            try:
                subscription.listener(event)
            except Exception:
                logger.exception(
                    "event listener %r raised on event %r; skipped it",
                    subscription.listener,
                    name,
                )
