"""Wrong argument types and values at every public entry point.

Each bad value must raise TypeError or ValueError at the call, with a
message that names the argument, and must start no thread.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from batcher import (
    Batcher,
    BatcherStoppedError,
    EventBus,
    NoWatcherError,
    Operation,
    ProvisionedResource,
    TooExpensiveError,
    Watcher,
)

# An int too large for a float: math.isnan() and float() raise OverflowError.
HUGE_INT = 10**400
# A float above threading.TIMEOUT_MAX (about 9.2e9 s on 64-bit Linux), so
# Event.wait() and Thread.join() raise OverflowError for it.
HUGE_SECONDS = 1e300


def ignore(ops: list[Operation]) -> None:
    """Watcher callback that does nothing."""


def keyword(name: str, value: object) -> dict[str, Any]:
    """Keyword arguments that pass ``value`` as ``name``, unchecked by mypy."""
    return {name: value}


def thread_names() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


@pytest.fixture
def no_new_threads() -> Iterator[None]:
    """Fail the test if it leaves a thread running that was not there before."""
    before = set(threading.enumerate())
    yield
    after = set(threading.enumerate())
    assert [thread.name for thread in after - before] == []


# (value, expected exception) for an argument that takes an int >= 0.
INT_CASES: list[tuple[object, type[Exception]]] = [
    (None, TypeError),
    (-1, ValueError),
    (1.5, TypeError),
    (2.0, TypeError),
    (math.nan, TypeError),
    (math.inf, TypeError),
    (True, TypeError),
    (False, TypeError),
    ("3", TypeError),
]

# (value, expected exception) for an argument that takes seconds above 0.
SECONDS_CASES: list[Any] = [
    (None, TypeError),
    (-1, ValueError),
    (-0.001, ValueError),
    (0, ValueError),
    (0.0, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    (True, TypeError),
    ("1", TypeError),
    pytest.param(HUGE_INT, ValueError, id="huge-int-ValueError"),
]

BATCHER_INT_ARGUMENTS = ["buffer_size", "max_concurrent_batches", "max_workers"]
BATCHER_SECONDS_ARGUMENTS = [
    "flush_interval",
    "capacity_interval",
    "audit_interval",
    "max_operation_time",
    "pause_time",
]
BATCHER_FLAG_ARGUMENTS = [
    "error_on_full_buffer",
    "emit_batch",
    "emit_flush",
    "emit_request",
    "manage_rate_limiter",
]


def check_rejected(
    call: Callable[[], object], expected: type[Exception], name: str
) -> None:
    before = thread_names()
    with pytest.raises(expected) as info:
        call()
    assert type(info.value) is expected
    assert name in str(info.value)
    assert thread_names() == before


@pytest.mark.parametrize("name", BATCHER_INT_ARGUMENTS)
@pytest.mark.parametrize(("value", "expected"), INT_CASES)
def test_batcher_int_argument_rejected(
    name: str, value: object, expected: type[Exception], no_new_threads: None
) -> None:
    if name == "max_workers" and value is None:
        pytest.skip("None is max_workers' default: a pool sized from the CPU count")
    check_rejected(lambda: Batcher(**keyword(name, value)), expected, name)


@pytest.mark.parametrize("name", ["buffer_size", "max_workers"])
def test_batcher_zero_size_rejected(name: str, no_new_threads: None) -> None:
    check_rejected(lambda: Batcher(**keyword(name, 0)), ValueError, name)


@pytest.mark.parametrize("name", BATCHER_SECONDS_ARGUMENTS)
@pytest.mark.parametrize(("value", "expected"), SECONDS_CASES)
def test_batcher_seconds_argument_rejected(
    name: str, value: object, expected: type[Exception], no_new_threads: None
) -> None:
    check_rejected(lambda: Batcher(**keyword(name, value)), expected, name)


@pytest.mark.parametrize("name", BATCHER_FLAG_ARGUMENTS)
@pytest.mark.parametrize("value", [None, 0, 1, "yes", 1.0])
def test_batcher_flag_argument_rejected(
    name: str, value: object, no_new_threads: None
) -> None:
    check_rejected(lambda: Batcher(**keyword(name, value)), TypeError, name)


@pytest.mark.parametrize("value", [object(), 5, "limiter"])
def test_batcher_rate_limiter_wrong_type_rejected(
    value: object, no_new_threads: None
) -> None:
    check_rejected(lambda: Batcher(value), TypeError, "rate_limiter")  # type: ignore[arg-type]


def test_batcher_rate_limiter_class_rejected(no_new_threads: None) -> None:
    """The class in place of an instance passes a runtime Protocol check,
    because the class has the property objects; it must still be rejected."""
    check_rejected(lambda: Batcher(ProvisionedResource), TypeError, "rate_limiter")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 5, 1.0, "monotonic"])
def test_batcher_clock_not_callable_rejected(
    value: object, no_new_threads: None
) -> None:
    check_rejected(lambda: Batcher(clock=value), TypeError, "clock")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [None, 1, "op", Watcher(ignore), object(), [Operation(None, 1)]]
)
def test_put_non_operation_rejected(value: object, no_new_threads: None) -> None:
    batcher = Batcher()

    check_rejected(lambda: batcher.put(value), TypeError, "Operation")  # type: ignore[arg-type]
    assert batcher.operations_in_buffer == 0
    assert batcher.needs_capacity == 0


def test_put_operation_without_watcher_rejected(no_new_threads: None) -> None:
    batcher = Batcher()

    with pytest.raises(NoWatcherError):
        batcher.put(Operation(None, 1))
    assert batcher.operations_in_buffer == 0


def test_put_cost_above_max_capacity_rejected(no_new_threads: None) -> None:
    batcher = Batcher(ProvisionedResource(10))

    with pytest.raises(TooExpensiveError) as info:
        batcher.put(Operation(Watcher(ignore), HUGE_INT))
    assert info.value.max_capacity == 10
    assert batcher.operations_in_buffer == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [case for case in SECONDS_CASES if not (isinstance(case, tuple) and case[0] == 0)],
)
def test_stop_bad_timeout_rejected_before_stopping(
    value: object, expected: type[Exception]
) -> None:
    delivered = threading.Event()
    watcher = Watcher(lambda ops: delivered.set())
    batcher = Batcher(flush_interval=0.01)
    batcher.start()
    try:
        threads_before = thread_names()

        check_rejected(lambda: batcher.stop(value), expected, "timeout")  # type: ignore[arg-type]
        # The Batcher still runs: it takes and delivers operations.
        assert thread_names() == threads_before
        batcher.put(Operation(watcher, 1))
        assert delivered.wait(10)
    finally:
        batcher.stop()


def test_stop_zero_timeout_accepted(no_new_threads: None) -> None:
    batcher = Batcher(flush_interval=0.01)
    batcher.start()

    assert batcher.stop(0) == []
    assert batcher.stop(0.0) == []


@pytest.mark.parametrize("timeout", [1e10, HUGE_SECONDS])
def test_stop_huge_timeout_stops_cleanly(timeout: float) -> None:
    """A timeout above threading.TIMEOUT_MAX must not break stop() halfway.

    stop() may reject it with ValueError before anything stops, or accept
    it as "wait as long as needed". The Batcher must end up either still
    running or fully stopped, never in between.
    """
    batcher = Batcher(flush_interval=0.01)
    batcher.start()
    prefix = f"batcher-{batcher._number}-"

    try:
        returned = batcher.stop(timeout)
    except ValueError as exc:
        assert "timeout" in str(exc)
        returned = batcher.stop()
    assert returned == []
    assert [t.name for t in threading.enumerate() if t.name.startswith(prefix)] == []
    with pytest.raises(BatcherStoppedError):
        batcher.put(Operation(Watcher(ignore), 1))


@pytest.mark.parametrize("name", BATCHER_SECONDS_ARGUMENTS)
def test_batcher_huge_interval_rejected_or_works(name: str) -> None:
    """A finite interval above a thread wait's limit is either rejected with
    ValueError naming it, or accepted and capped so the Batcher still runs."""
    before = thread_names()
    try:
        batcher = Batcher(ProvisionedResource(10), **keyword(name, HUGE_SECONDS))
    except ValueError as exc:
        assert name in str(exc)
        assert thread_names() == before
        return
    batcher.start()
    batcher.pause()
    operation = Operation(Watcher(ignore), 1)
    batcher.put(operation)

    returned = batcher.stop(0.2)

    # The pause runs for pause_time, so only a short pause lets it flush.
    expected = [operation] if name == "pause_time" else returned
    assert returned == expected
    assert batcher.needs_capacity == 0
    assert thread_names() == before


@pytest.mark.parametrize(("value", "expected"), INT_CASES)
def test_operation_cost_rejected(
    value: object, expected: type[Exception], no_new_threads: None
) -> None:
    check_rejected(lambda: Operation(Watcher(ignore), value), expected, "cost")  # type: ignore[arg-type]


def test_operation_huge_cost_accepted_without_rate_limiter() -> None:
    assert Operation(Watcher(ignore), HUGE_INT).cost == HUGE_INT


@pytest.mark.parametrize("value", [None, 0, 1, "yes"])
def test_operation_batchable_rejected(value: object, no_new_threads: None) -> None:
    check_rejected(
        lambda: Operation(Watcher(ignore), 1, batchable=value),  # type: ignore[arg-type]
        TypeError,
        "batchable",
    )


@pytest.mark.parametrize("value", [ignore, "watcher", 1, object()])
def test_operation_watcher_wrong_type_rejected(
    value: object, no_new_threads: None
) -> None:
    check_rejected(lambda: Operation(value, 1), TypeError, "watcher")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 1, "print", object()])
def test_watcher_callback_not_callable_rejected(
    value: object, no_new_threads: None
) -> None:
    check_rejected(lambda: Watcher(value), TypeError, "callback")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["max_attempts", "max_batch_size"])
@pytest.mark.parametrize(
    ("value", "expected"), [c for c in INT_CASES if c[0] is not None]
)
def test_watcher_int_argument_rejected(
    name: str, value: object, expected: type[Exception], no_new_threads: None
) -> None:
    check_rejected(lambda: Watcher(ignore, **keyword(name, value)), expected, name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        case
        for case in SECONDS_CASES
        if not (isinstance(case, tuple) and case[0] is None)
    ],
)
def test_watcher_max_operation_time_rejected(
    value: object, expected: type[Exception], no_new_threads: None
) -> None:
    check_rejected(
        lambda: Watcher(ignore, max_operation_time=value),  # type: ignore[arg-type]
        expected,
        "max_operation_time",
    )


@pytest.mark.parametrize(("value", "expected"), INT_CASES)
def test_provisioned_resource_capacity_rejected(
    value: object, expected: type[Exception], no_new_threads: None
) -> None:
    check_rejected(lambda: ProvisionedResource(value), expected, "capacity")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 1, "listener", object()])
def test_subscribe_listener_not_callable_rejected(
    value: object, no_new_threads: None
) -> None:
    bus = EventBus()

    check_rejected(lambda: bus.subscribe(value), TypeError, "listener")  # type: ignore[arg-type]
    assert not bus.has_listeners


def test_batcher_events_subscribe_not_callable_rejected(no_new_threads: None) -> None:
    batcher = Batcher()

    check_rejected(lambda: batcher.events.subscribe(None), TypeError, "listener")  # type: ignore[arg-type]


def test_rejected_put_leaves_counters(no_new_threads: None) -> None:
    """A rejected put() changes neither the buffer nor needs_capacity."""
    batcher = Batcher(ProvisionedResource(5))
    batcher.put(Operation(Watcher(ignore), 5))
    bad_values: list[Any] = [None, Operation(None, 1), Operation(Watcher(ignore), 6)]

    for value in bad_values:
        with pytest.raises((TypeError, NoWatcherError, TooExpensiveError)):
            batcher.put(value)

    assert batcher.operations_in_buffer == 1
    assert batcher.needs_capacity == 5
