"""The end-of-run summary, computed from the SQLite datastore alone.

Nothing here reads batcher's own counters: records written, lost and
duplicated, the cost per second and the capacity timeline all come from
rows that the instances wrote.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._datastore import RunSettings, connect

__all__ = [
    "Summary",
    "WindowBatch",
    "first_full_capacity",
    "max_window_cost",
    "read_summary",
    "saturated_utilisation",
]

#: Length in seconds of the sliding window that the limit applies to.
WINDOW: float = 1.0


@dataclass(frozen=True, slots=True)
class WindowBatch:
    """One batch in the 1-second window with the largest cost by raise time."""

    instance: int
    #: Seconds from the start of the run.
    raised_at: float
    cost: int


@dataclass(frozen=True, slots=True)
class Summary:
    """Figures of one run, computed from the datastore rows. Times are seconds
    from the start."""

    settings: RunSettings
    duration: float
    expected: int
    written: int
    lost: int
    duplicated: int
    unexpected: int
    #: Largest cost in any 1-second window, by the time the Batcher raised
    #: each batch, and the end of that window. The limit applies to this.
    max_window_raised: int
    max_window_raised_at: float
    #: The batches in that window, listed when it exceeds the limit.
    max_window_batches: tuple[WindowBatch, ...]
    #: The same maximum by the time each callback started.
    max_window_handed: int
    #: The same maximum by the time each batch's transaction committed.
    max_window_committed: int
    #: Seconds from the start until less than one second of work was left.
    saturated_for: float
    #: Cost written while saturated over the limit times ``saturated_for``.
    utilisation: float | None
    #: Seconds from the start until the instances held the whole limit.
    full_capacity_after: float | None
    max_capacity_held: int
    storage_requests: int

    @property
    def limit_exceeded(self) -> bool:
        """Whether some 1-second window, by raise time, cost more than the limit."""
        return self.max_window_raised > self.settings.limit

    @property
    def ok(self) -> bool:
        """Whether every record was written exactly once within the limit."""
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.unexpected == 0
            and not self.limit_exceeded
        )

    def lines(self) -> list[str]:
        """Return the summary as lines of text for the terminal."""
        settings = self.settings
        limit = settings.limit
        utilisation = (
            "n/a (demand never exceeded capacity)"
            if self.utilisation is None
            else f"{self.utilisation:.1%} of the limit over the first "
            f"{self.saturated_for:.1f} s, until less than 1 s of work was left"
        )
        full = (
            "full capacity was never held at once"
            if self.full_capacity_after is None
            else f"all of it from {self.full_capacity_after:.1f} s after the start"
        )
        rate = self.storage_requests / self.duration if self.duration > 0 else 0.0
        lines = [
            f"records written     {self.written} of {self.expected} "
            f"in {self.duration:.1f} s",
            f"records lost        {self.lost}",
            f"records duplicated  {self.duplicated}",
        ]
        if self.unexpected:
            lines.append(f"records not in the input  {self.unexpected}")
        lines.append(
            f"limit               {limit} cost/s = {settings.reserved_capacity} "
            f"reserved x {settings.instances} instances + "
            f"{settings.shared_capacity} shared"
        )
        lines += self._window_lines()
        lines += [
            f"capacity held       at most {self.max_capacity_held} of {limit}; {full}",
            f"mean utilisation    {utilisation}",
            f"storage requests    {self.storage_requests} "
            f"({rate:.1f} per second, container and blob creation included)",
        ]
        problems = []
        if self.lost:
            problems.append(f"{self.lost} records lost")
        if self.duplicated:
            problems.append(f"{self.duplicated} records duplicated")
        if self.unexpected:
            problems.append(f"{self.unexpected} rows for records not in the input")
        if self.limit_exceeded:
            problems.append(
                f"cost {self.max_window_raised} in one second exceeds the limit {limit}"
            )
        if problems:
            lines.append("result              FAILED: " + "; ".join(problems))
        else:
            lines.append(
                "result              OK: every record written once, within the limit"
            )
        return lines

    def _window_lines(self) -> list[str]:
        """Return the lines on the maximum cost in one second, by each time."""
        lines = [
            f"max cost in 1 s     {self.max_window_raised} by raise time, when the "
            "Batcher raised each batch",
            f"                    (window ending {self.max_window_raised_at:.1f} s), "
            "checked against the limit",
            f"by callback start   {self.max_window_handed}, for information only",
            f"by commit time      {self.max_window_committed}, for information only. "
            "These two times include",
            "                    thread pickup and database lock waits after the "
            "raise.",
        ]
        if self.limit_exceeded:
            # Each batch's instance and raise time let a reader match the
            # excess to that instance's flushes and capacity changes.
            for number, batch in enumerate(self.max_window_batches):
                label = "batches in window" if number == 0 else ""
                lines.append(
                    f"{label:<20}instance {batch.instance}, raised at "
                    f"{batch.raised_at:.3f} s, cost {batch.cost}"
                )
        return lines


def read_summary(path: Path) -> Summary:
    """Compute the summary of the run stored in the database at ``path``."""
    connection = connect(path)
    try:
        instances, reserved, shared, factor, started_at, finished_at = (
            connection.execute(
                "SELECT instances, reserved_capacity, shared_capacity, factor, "
                "started_at, finished_at FROM run"
            ).fetchone()
        )
        settings = RunSettings(instances, reserved, shared, factor)
        expected, expected_cost = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM input"
        ).fetchone()
        (written,) = connection.execute(
            "SELECT COUNT(DISTINCT record_id) FROM writes "
            "WHERE record_id IN (SELECT record_id FROM input)"
        ).fetchone()
        (duplicated,) = connection.execute(
            "SELECT COALESCE(SUM(copies - 1), 0) FROM "
            "(SELECT COUNT(*) AS copies FROM writes GROUP BY record_id)"
        ).fetchone()
        (unexpected,) = connection.execute(
            "SELECT COUNT(*) FROM writes "
            "WHERE record_id NOT IN (SELECT record_id FROM input)"
        ).fetchone()
        raised_rows = connection.execute(
            "SELECT raised_at, instance, SUM(cost) FROM writes "
            "GROUP BY instance, raised_at ORDER BY raised_at, instance"
        ).fetchall()
        handed = connection.execute(
            "SELECT handed_at, SUM(cost) FROM writes GROUP BY instance, handed_at "
            "ORDER BY handed_at"
        ).fetchall()
        committed = connection.execute(
            "SELECT committed_at, SUM(cost) FROM writes "
            "GROUP BY instance, committed_at ORDER BY committed_at"
        ).fetchall()
        capacity_rows = connection.execute(
            "SELECT at, instance, capacity FROM capacity ORDER BY at"
        ).fetchall()
        (storage_requests,) = connection.execute(
            "SELECT COALESCE(SUM(storage_requests), 0) FROM instances"
        ).fetchone()
    finally:
        connection.close()

    if started_at is None:
        raise ValueError(f"{path}: the run never started")
    if finished_at is None:
        finished_at = max((at for at, _ in committed), default=started_at)
    raised = [(at, cost) for at, _, cost in raised_rows]
    max_raised, max_raised_at = max_window_cost(raised)
    window_batches = tuple(
        WindowBatch(instance, at - started_at, cost)
        for at, instance, cost in raised_rows
        if max_raised_at - WINDOW < at <= max_raised_at
    )
    max_handed, _ = max_window_cost(handed)
    max_committed, _ = max_window_cost(committed)
    saturated_for, utilisation = saturated_utilisation(
        raised, started_at, expected_cost, settings.limit
    )
    full_at, max_held = first_full_capacity(capacity_rows, settings.limit)
    return Summary(
        settings=settings,
        duration=finished_at - started_at,
        expected=expected,
        written=written,
        lost=expected - written,
        duplicated=duplicated,
        unexpected=unexpected,
        max_window_raised=max_raised,
        max_window_raised_at=max_raised_at - started_at,
        max_window_batches=window_batches,
        max_window_handed=max_handed,
        max_window_committed=max_committed,
        saturated_for=saturated_for,
        utilisation=utilisation,
        full_capacity_after=None if full_at is None else max(full_at - started_at, 0),
        max_capacity_held=max_held,
        storage_requests=storage_requests,
    )


def max_window_cost(costs: Sequence[tuple[float, int]]) -> tuple[int, float]:
    """Return the largest total cost in any window (t - WINDOW, t], and its t.

    ``costs`` contains (time, cost) pairs sorted by time. The maximum over all
    window positions is reached by a window that ends at one of the times.
    """
    window: deque[tuple[float, int]] = deque()
    total = 0
    best, best_at = 0, 0.0
    for at, cost in costs:
        window.append((at, cost))
        total += cost
        while window[0][0] <= at - WINDOW:
            total -= window.popleft()[1]
        if total > best:
            best, best_at = total, at
    return best, best_at


def saturated_utilisation(
    costs: Sequence[tuple[float, int]],
    started_at: float,
    total_cost: int,
    limit: int,
) -> tuple[float, float | None]:
    """Return how long demand exceeded the limit, and the mean utilisation then.

    ``costs`` contains (raise time, cost) pairs sorted by time. Demand
    exceeds capacity from the start until the batch after which the cost not
    yet raised is below one second's worth of the limit. Utilisation is the
    cost raised up to and including that batch, divided by what the limit
    allowed in that time.
    If records were lost, saturation lasts until the last batch. Returns
    (0, None) when the work never exceeded one second's worth.
    """
    if total_cost < limit * WINDOW or not costs:
        return 0.0, None
    remaining = total_cost
    spent = 0
    end = costs[-1][0]
    for at, cost in costs:
        remaining -= cost
        spent += cost
        if remaining < limit * WINDOW:
            end = at
            break
    elapsed = end - started_at
    if elapsed <= 0:
        return 0.0, None
    return elapsed, spent / (limit * elapsed)


def first_full_capacity(
    changes: Iterable[tuple[float, int, int]], limit: int
) -> tuple[float | None, int]:
    """Return when the instances first held ``limit`` together, and the maximum held.

    ``changes`` contains (time, instance, capacity now) rows sorted by time.
    """
    held: dict[int, int] = {}
    first_full: float | None = None
    most = 0
    for at, instance, capacity in changes:
        held[instance] = capacity
        total = sum(held.values())
        most = max(most, total)
        if first_full is None and total >= limit:
            first_full = at
    return first_full, most
