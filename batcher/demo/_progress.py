"""The one-line-per-second progress report while the demo runs."""

from __future__ import annotations

from ._instance import Status

__all__ = ["Progress"]


class Progress:
    """The latest status of each instance, formatted as progress lines.

    Not thread-safe: the parent's main thread updates and prints it.
    """

    def __init__(self, instances: int, limit: int) -> None:
        self._instances = instances
        self._limit = limit
        self._latest: dict[int, Status] = {}
        self._done: set[int] = set()

    def update(self, index: int, status: Status, *, done: bool = False) -> None:
        """Store the latest status of instance ``index``; ``done`` if its last."""
        self._latest[index] = status
        if done:
            self._done.add(index)

    def header(self) -> list[str]:
        """Return the lines that explain the columns."""
        blocks = "".join(
            f" | {'instance ' + str(i):<18}" for i in range(1, self._instances + 1)
        )
        columns = " |  held  sent buffer" * self._instances
        return [
            "Each second, per instance: capacity held (cost/s), cost sent to the "
            "datastore in the last second and operations buffered; then the totals "
            f"against the limit of {self._limit} cost/s.",
            f"  time{blocks} | all instances",
            f"      {columns} |  held  sent",
        ]

    def line(self, now: float, started_at: float) -> str:
        """Return the progress line for clock time ``now``."""
        parts = [f"{now - started_at:5.0f}s"]
        held_total = 0
        sent_total = 0
        for index in range(1, self._instances + 1):
            status = self._latest.get(index)
            if status is None:
                parts.append(f"{'-':>5} {'-':>5} {'-':>6}")
                continue
            # A running instance's last second ends at its latest report. A
            # finished one sends nothing more, so its last second ends now.
            end = now if index in self._done else status.at
            sent = sum(cost for at, cost in status.recent_batches if at > end - 1.0)
            held_total += status.capacity
            sent_total += sent
            parts.append(f"{status.capacity:5d} {sent:5d} {status.buffered:6d}")
        parts.append(f"{held_total:5d} {sent_total:5d} of {self._limit}")
        return " | ".join(parts)
