"""Property-based tests of the batching rules, without threads.

A fake clock drives ``Batcher._flush_step()``. The worker pool's ``submit``
is replaced by a list, which captures each raised batch in order. The test
completes batches through ``Batcher._run_batch()``, the path a worker takes.
Clock values are multiples of 1/64 s, which floats hold exactly, so
the one-second window check has no rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from batcher import Batcher, Operation, ProvisionedResource, Watcher
from batcher._batcher import _Batch

TICK = 1 / 64
FLUSH_INTERVALS = [TICK, 4 * TICK, 8 * TICK, 16 * TICK, 1.0, 2.0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Scenario:
    capacity: int
    flush_interval: float
    max_concurrent_batches: int
    max_batch_sizes: list[int]
    # (watcher index, cost, batchable) in put order.
    operations: list[tuple[int, int, bool]]
    # Per step: operations put before it, clock advance in ticks, and
    # whether every inflight batch completes after it (else only the oldest).
    steps: list[tuple[int, int, bool]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    capacity = draw(st.integers(1, 200))
    max_batch_sizes = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    operation = st.tuples(
        st.integers(0, len(max_batch_sizes) - 1),
        # Mostly small costs, with some above a flush's share and up to the
        # full capacity.
        st.one_of(st.integers(0, max(capacity // 10, 1)), st.integers(0, capacity)),
        st.booleans(),
    )
    return Scenario(
        capacity=capacity,
        flush_interval=draw(st.sampled_from(FLUSH_INTERVALS)),
        max_concurrent_batches=draw(st.integers(0, 4)),
        max_batch_sizes=max_batch_sizes,
        operations=draw(st.lists(operation, max_size=40)),
        steps=draw(
            st.lists(
                st.tuples(st.integers(0, 8), st.integers(0, 200), st.booleans()),
                max_size=30,
            )
        ),
    )


@dataclass
class Outcome:
    # (clock time, batch) in the order they were raised.
    raised: list[tuple[float, _Batch]]
    watchers: list[Watcher]
    operations: list[Operation]
    max_inflight_seen: int
    buffer_left: int
    inflight_left: int
    needs_capacity_left: int


def run(scenario: Scenario) -> Outcome:
    clock = FakeClock()
    delivered: list[list[Operation]] = []
    watchers = [
        Watcher(delivered.append, max_batch_size=size)
        for size in scenario.max_batch_sizes
    ]
    batcher = Batcher(
        ProvisionedResource(scenario.capacity),
        flush_interval=scenario.flush_interval,
        max_concurrent_batches=scenario.max_concurrent_batches,
        # Far above any run here, so no batch times out.
        max_operation_time=1e6,
        buffer_size=1000,
        clock=clock,
    )
    submitted: list[_Batch] = []
    setattr(batcher._pool, "submit", submitted.append)  # noqa: B010

    operations = [
        Operation(watchers[w], cost, payload=n, batchable=batchable)
        for n, (w, cost, batchable) in enumerate(scenario.operations)
    ]
    pending = list(operations)
    raised: list[tuple[float, _Batch]] = []
    inflight: list[_Batch] = []
    max_inflight = 0

    def step(advance_ticks: int, complete_all: bool) -> None:
        nonlocal max_inflight
        clock.now += advance_ticks * TICK
        before = len(submitted)
        batcher._flush_step()
        for batch in submitted[before:]:
            raised.append((clock.now, batch))
            inflight.append(batch)
        max_inflight = max(max_inflight, batcher.inflight)
        while inflight:
            batcher._run_batch(inflight.pop(0))
            if not complete_all:
                break

    for put_count, advance_ticks, complete_all in scenario.steps:
        for op in pending[:put_count]:
            batcher.put(op)
        del pending[:put_count]
        step(advance_ticks, complete_all)

    # Then flush at the interval, completing everything, until done. The
    # bound allows for the whole cost at the capacity, a full second for
    # the window to clear before each large operation, and one flush per
    # operation when max_concurrent_batches allows one batch at a time.
    for op in pending:
        batcher.put(op)
    total_cost = sum(op.cost for op in operations)
    seconds = total_cost / scenario.capacity + 2 * len(operations) + 3
    max_steps = math.ceil(seconds / scenario.flush_interval) + 2 * len(operations)
    interval_ticks = round(scenario.flush_interval / TICK)
    for _ in range(max_steps):
        if not batcher.operations_in_buffer and not inflight:
            break
        step(interval_ticks, True)

    return Outcome(
        raised=raised,
        watchers=watchers,
        operations=operations,
        max_inflight_seen=max_inflight,
        buffer_left=batcher.operations_in_buffer,
        inflight_left=batcher.inflight,
        needs_capacity_left=batcher.needs_capacity,
    )


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_flush_rules_hold(scenario: Scenario) -> None:
    outcome = run(scenario)
    batches = [batch for _, batch in outcome.raised]

    # Nothing lost, nothing duplicated, each operation handed over once.
    delivered = [op.payload for batch in batches for op in batch.operations]
    assert sorted(delivered) == list(range(len(outcome.operations)))
    assert all(op.attempt == 1 for op in outcome.operations)
    assert outcome.buffer_left == 0
    assert outcome.inflight_left == 0
    assert outcome.needs_capacity_left == 0

    # Batch size and batchable rules.
    for batch in batches:
        assert batch.operations, "an empty batch was raised"
        assert all(op.watcher is batch.watcher for op in batch.operations)
        if len(batch.operations) > 1:
            assert all(op.batchable for op in batch.operations)
        if batch.watcher.max_batch_size:
            assert len(batch.operations) <= batch.watcher.max_batch_size

    # Each watcher receives its operations in put order.
    for watcher in outcome.watchers:
        received = [
            op.payload
            for batch in batches
            if batch.watcher is watcher
            for op in batch.operations
        ]
        put_order = [op.payload for op in outcome.operations if op.watcher is watcher]
        assert received == put_order

    # At most max_concurrent_batches inflight.
    if scenario.max_concurrent_batches:
        assert outcome.max_inflight_seen <= scenario.max_concurrent_batches


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_cost_per_sliding_second_within_capacity(scenario: Scenario) -> None:
    """The cost raised in any half-open window [t, t + 1 s) is at most the
    capacity. A window holding the most cost starts at a raise, so checking
    the windows that start at each raise covers every window."""
    outcome = run(scenario)
    raises = [(time, batch.cost) for time, batch in outcome.raised]

    for start, _ in raises:
        window_cost = sum(cost for time, cost in raises if start <= time < start + 1.0)
        assert window_cost <= scenario.capacity, (
            f"cost {window_cost} raised in [{start}, {start + 1.0}) "
            f"exceeds capacity {scenario.capacity}"
        )


@settings(max_examples=100, deadline=None)
@given(
    capacity=st.integers(2, 500),
    flush_interval=st.sampled_from(FLUSH_INTERVALS[:4]),
    expensive=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10),
)
def test_operations_above_flush_share_raised(
    capacity: int, flush_interval: float, expensive: list[float]
) -> None:
    """Operations costing more than a flush's share (up to the capacity)
    are raised, each after a wait bounded by a couple of seconds."""
    share = capacity * flush_interval
    low = min(math.floor(share) + 1, capacity)
    costs = [low + round(f * (capacity - low)) for f in expensive]
    scenario = Scenario(
        capacity=capacity,
        flush_interval=flush_interval,
        max_concurrent_batches=0,
        max_batch_sizes=[0],
        operations=[(0, cost, False) for cost in costs],
        steps=[],
    )
    outcome = run(scenario)

    assert [batch.cost for _, batch in outcome.raised] == costs
    times = [time for time, _ in outcome.raised]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert all(gap <= 2.5 for gap in gaps), gaps
