"""Draw a run from the datastore: capacity held and cost written over time."""

from __future__ import annotations

import math
from pathlib import Path

from ._datastore import connect

__all__ = ["plot_run"]


def plot_run(database: Path, output: Path) -> None:
    """Write a PNG with capacity held and cost written per instance over time.

    Cost written is summed per whole second by the time the Batcher raised
    each batch, the time the limit applies to. Both panels show the limit as
    a dashed line.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    connection = connect(database)
    try:
        instances, reserved, shared, started_at, finished_at = connection.execute(
            "SELECT instances, reserved_capacity, shared_capacity, started_at, "
            "finished_at FROM run"
        ).fetchone()
        capacity_rows = connection.execute(
            "SELECT instance, at, capacity FROM capacity ORDER BY at"
        ).fetchall()
        cost_rows = connection.execute(
            "SELECT instance, CAST((raised_at - ?) AS INTEGER) AS second, SUM(cost) "
            "FROM writes WHERE raised_at >= ? GROUP BY instance, second",
            (started_at, started_at),
        ).fetchall()
    finally:
        connection.close()
    limit = reserved * instances + shared
    end = max((finished_at or started_at) - started_at, 1.0)

    figure, (capacity_axes, cost_axes) = pyplot.subplots(
        2, 1, sharex=True, figsize=(11, 7), constrained_layout=True
    )
    seconds = math.ceil(end)
    totals_held: dict[float, int] = {}
    held_now: dict[int, int] = {}
    for index in range(1, instances + 1):
        times = [0.0]
        values = [0]
        for instance, at, capacity in capacity_rows:
            if instance == index:
                times.append(max(at - started_at, 0.0))
                values.append(capacity)
        times.append(end)
        values.append(values[-1])
        capacity_axes.step(times, values, where="post", label=f"instance {index}")
    for instance, at, capacity in capacity_rows:
        held_now[instance] = capacity
        totals_held[max(at - started_at, 0.0)] = sum(held_now.values())
    total_times = [0.0, *totals_held, end]
    total_values = [0, *totals_held.values()]
    total_values.append(total_values[-1])
    capacity_axes.step(
        total_times, total_values, where="post", color="black", label="all instances"
    )
    capacity_axes.axhline(limit, color="red", linestyle="--", label=f"limit {limit}")
    capacity_axes.set_ylabel("capacity held (cost/s)")
    capacity_axes.set_title("Capacity each instance holds")
    capacity_axes.set_ylim(0, limit * 1.15)
    capacity_axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")

    per_second: dict[int, list[int]] = {
        index: [0] * seconds for index in range(1, instances + 1)
    }
    for instance, second, cost in cost_rows:
        if 0 <= second < seconds:
            per_second[instance][second] += cost
    starts = [float(second) for second in range(seconds)]
    bottom = [0] * seconds
    for index, costs in per_second.items():
        cost_axes.bar(
            starts,
            costs,
            width=1.0,
            align="edge",
            bottom=bottom,
            label=f"instance {index}",
        )
        bottom = [b + c for b, c in zip(bottom, costs, strict=True)]
    cost_axes.axhline(limit, color="red", linestyle="--", label=f"limit {limit}")
    cost_axes.set_ylabel("cost written (per second)")
    cost_axes.set_xlabel("seconds since the start")
    cost_axes.set_title(
        "Cost written per second, stacked by instance, by the time the Batcher "
        "raised each batch"
    )
    cost_axes.set_ylim(0, limit * 1.15)
    cost_axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    cost_axes.set_xlim(0, end)

    figure.savefig(output, dpi=100)
    pyplot.close(figure)
