"""How much cost one flush may raise.

Three limits combine:

- A log of what was raised in the last second caps the cost in every
  sliding one-second window at the capacity per second, exactly.
- The same log caps the cost in every sliding window of one flush interval
  at ``SMOOTHING`` times that interval's share, so a second's capacity is
  spread across the second rather than sent in one burst.
- A token bucket that fills at the capacity per second keeps the long-run
  rate at the capacity when flushes run late or early.

An operation that costs more than these limits allow waits at the head of
the buffer while the limits grow to its cost, so it runs as soon as enough
capacity has accrued instead of starving.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Pacer"]

#: Length of the sliding window whose cost may not exceed the capacity.
WINDOW_SECONDS = 1.0
#: Cost allowed in any sliding flush interval, as a multiple of that
#: interval's share of the capacity.
SMOOTHING = 1.5
#: The bucket contains at most this many flush intervals' worth of capacity, so a
#: flush cut short by the window limits can make it up in the next ones.
BUCKET_INTERVALS = 2.5


class Pacer:
    """Budget for each flush. Not thread-safe: one flush runs at a time."""

    def __init__(self, flush_interval: float) -> None:
        self._flush_interval = flush_interval
        self._tokens = 0.0
        self._last_budget_time: float | None = None
        # Cost of the operation that stopped the last flush for lack of
        # budget; the limits grow to it so that operation can run.
        self._blocked_cost = 0
        self._raised: deque[tuple[float, int]] = deque()
        self._raised_cost = 0

    def budget(self, now: float, capacity: int) -> float:
        """Return the cost that a flush starting at ``now`` may raise."""
        share = capacity * self._flush_interval
        if self._last_budget_time is None:
            self._tokens = share
        else:
            elapsed = max(now - self._last_budget_time, 0.0)
            self._tokens += capacity * elapsed
        self._last_budget_time = now
        self._tokens = min(
            self._tokens, max(share * BUCKET_INTERVALS, self._blocked_cost)
        )

        raised = self._raised
        horizon = now - WINDOW_SECONDS
        while raised and raised[0][0] <= horizon:
            self._raised_cost -= raised.popleft()[1]
        recent_cost = 0
        recent_horizon = now - self._flush_interval
        for end, cost in reversed(raised):
            if end <= recent_horizon:
                break
            recent_cost += cost
        recent_limit = max(share * SMOOTHING, self._blocked_cost)

        budget = min(
            self._tokens,
            capacity - self._raised_cost,
            recent_limit - recent_cost,
        )
        return max(budget, 0.0)

    def record(self, end: float, cost: int, blocked_cost: int = 0) -> None:
        """Count ``cost`` raised by a flush that ended at ``end``.

        ``blocked_cost`` is the cost of the operation that stopped the flush
        for lack of budget, or 0. Timing the whole flush at its end keeps the
        windows conservative: every batch of the flush was raised at or
        before ``end``.
        """
        self._blocked_cost = blocked_cost
        if cost <= 0:
            return
        self._tokens -= cost
        self._raised.append((end, cost))
        self._raised_cost += cost
