"""The flush budget: exact one-second windows, smoothing, waiting for cost."""

from __future__ import annotations

import random

from batcher._pacer import Pacer


def test_first_budget_is_one_share() -> None:
    pacer = Pacer(0.1)
    assert pacer.budget(0.0, 1_000) == 100


def test_budget_accrues_with_time() -> None:
    pacer = Pacer(0.1)
    pacer.budget(0.0, 1_000)
    pacer.record(0.0, 100)
    assert pacer.budget(0.1, 1_000) == 100


def test_budget_bucket_is_bounded_after_idle() -> None:
    pacer = Pacer(0.1)
    pacer.budget(0.0, 1_000)
    # A long idle spell does not let the next flush send the whole second.
    assert pacer.budget(30.0, 1_000) <= 150


def test_budget_respects_one_second_window() -> None:
    pacer = Pacer(0.1)
    rng = random.Random(1)
    now = 0.0
    raised: list[tuple[float, float]] = []
    for _ in range(500):
        now += rng.uniform(0.0, 0.25)
        budget = pacer.budget(now, 1_000)
        cost = int(budget * rng.uniform(0.5, 1.0))
        pacer.record(now, cost)
        raised.append((now, cost))
    for i, (start, _) in enumerate(raised):
        assert sum(c for t, c in raised[i:] if t < start + 1.0) <= 1_000


def test_budget_smooths_within_interval() -> None:
    pacer = Pacer(0.1)
    pacer.budget(0.0, 1_000)
    pacer.record(0.0, 150)
    # A flush that comes early shares the interval's limit with the last.
    assert pacer.budget(0.05, 1_000) == 0


def test_blocked_cost_grows_limits() -> None:
    pacer = Pacer(0.1)
    now = 0.0
    budget = pacer.budget(now, 1_000)
    pacer.record(now, 0, blocked_cost=600)
    while budget < 600:
        now += 0.1
        budget = pacer.budget(now, 1_000)
        pacer.record(now, 0, blocked_cost=600)
    assert round(now, 6) == 0.5


def test_capacity_drop_applies_at_once() -> None:
    pacer = Pacer(0.1)
    pacer.budget(0.0, 1_000)
    pacer.record(0.0, 100)
    assert pacer.budget(0.1, 100) == 0
