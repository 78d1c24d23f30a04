"""The public names and their argument checks."""

from __future__ import annotations

import math
import threading

import pytest

import batcher
from batcher import Batcher, Operation, ProvisionedResource, Watcher

EXPECTED_PUBLIC_NAMES = [
    "AzureBlobLeaseManager",
    "Batch",
    "Batcher",
    "BatcherError",
    "BatcherStoppedError",
    "BufferFullError",
    "CapacityError",
    "Event",
    "EventBus",
    "LeaseHold",
    "LeaseManager",
    "LeaseStoreError",
    "LifecycleError",
    "NoWatcherError",
    "Operation",
    "OperationError",
    "PartitionState",
    "ProvisionedResource",
    "RateLimiter",
    "SharedCapacityNotProvisionedError",
    "SharedResource",
    "Subscription",
    "TooExpensiveError",
    "TooManyAttemptsError",
    "Watcher",
    "WrongOrderError",
    "events",
    "log_events",
]


def test_all_lists_exactly_the_public_names() -> None:
    assert batcher.__all__ == EXPECTED_PUBLIC_NAMES


def test_all_is_sorted() -> None:
    assert batcher.__all__ == sorted(batcher.__all__, key=lambda n: (n.islower(), n))


def test_all_names_resolve() -> None:
    for name in batcher.__all__:
        assert getattr(batcher, name) is not None


def test_errors_share_one_base() -> None:
    for name in batcher.__all__:
        value = getattr(batcher, name)
        if isinstance(value, type) and name.endswith("Error"):
            assert issubclass(value, batcher.BatcherError)


def test_package_ships_type_marker() -> None:
    from importlib.resources import files

    assert files("batcher").joinpath("py.typed").is_file()


def callback(batch: list[Operation]) -> None:
    pass


BAD_COSTS = [
    (None, TypeError),
    (-1, ValueError),
    (1.5, TypeError),
    (True, TypeError),
    (math.nan, TypeError),
    ("3", TypeError),
]


@pytest.mark.parametrize(("cost", "error"), BAD_COSTS)
def test_operation_rejects_bad_cost(cost: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="cost") as info:
        Operation(Watcher(callback), cost)  # type: ignore[arg-type]
    assert repr(cost) in str(info.value)


def test_operation_rejects_bad_watcher_and_flag() -> None:
    with pytest.raises(TypeError, match="watcher"):
        Operation(callback, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="batchable"):
        Operation(Watcher(callback), 1, batchable=1)  # type: ignore[arg-type]


def test_operation_repr_hides_payload() -> None:
    op = Operation(Watcher(callback), 2, payload="secret-payload")
    assert "secret-payload" not in repr(op)


BAD_WATCHER_ARGS = [
    ({"callback": None}, TypeError, "callback"),
    ({"callback": 5}, TypeError, "callback"),
    ({"max_attempts": -1}, ValueError, "max_attempts"),
    ({"max_attempts": 1.0}, TypeError, "max_attempts"),
    ({"max_batch_size": -2}, ValueError, "max_batch_size"),
    ({"max_batch_size": False}, TypeError, "max_batch_size"),
    ({"max_operation_time": 0}, ValueError, "max_operation_time"),
    ({"max_operation_time": -1.0}, ValueError, "max_operation_time"),
    ({"max_operation_time": math.nan}, ValueError, "max_operation_time"),
    ({"max_operation_time": "1"}, TypeError, "max_operation_time"),
]


@pytest.mark.parametrize(("kwargs", "error", "name"), BAD_WATCHER_ARGS)
def test_watcher_rejects_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    arguments: dict[str, object] = {"callback": callback, **kwargs}
    with pytest.raises(error, match=name):
        Watcher(**arguments)  # type: ignore[arg-type]


BAD_BATCHER_ARGS = [
    ({"rate_limiter": object()}, TypeError, "rate_limiter"),
    ({"buffer_size": 0}, ValueError, "buffer_size"),
    ({"buffer_size": -5}, ValueError, "buffer_size"),
    ({"buffer_size": 10.0}, TypeError, "buffer_size"),
    ({"flush_interval": 0}, ValueError, "flush_interval"),
    ({"flush_interval": -0.1}, ValueError, "flush_interval"),
    ({"flush_interval": math.inf}, ValueError, "flush_interval"),
    ({"capacity_interval": 0.0}, ValueError, "capacity_interval"),
    ({"audit_interval": -1}, ValueError, "audit_interval"),
    ({"max_operation_time": 0}, ValueError, "max_operation_time"),
    ({"pause_time": math.nan}, ValueError, "pause_time"),
    ({"pause_time": None}, TypeError, "pause_time"),
    ({"max_concurrent_batches": -1}, ValueError, "max_concurrent_batches"),
    ({"max_concurrent_batches": 1.5}, TypeError, "max_concurrent_batches"),
    ({"error_on_full_buffer": 1}, TypeError, "error_on_full_buffer"),
    ({"emit_batch": "yes"}, TypeError, "emit_batch"),
    ({"emit_flush": None}, TypeError, "emit_flush"),
    ({"emit_request": 0}, TypeError, "emit_request"),
    ({"max_workers": 0}, ValueError, "max_workers"),
    ({"clock": 3}, TypeError, "clock"),
]


@pytest.mark.parametrize(("kwargs", "error", "name"), BAD_BATCHER_ARGS)
def test_batcher_rejects_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    before = threading.active_count()
    with pytest.raises(error, match=name):
        Batcher(**kwargs)  # type: ignore[arg-type]
    assert threading.active_count() == before


def test_stop_rejects_bad_timeout() -> None:
    batcher_obj = Batcher()
    with pytest.raises(ValueError, match="timeout"):
        batcher_obj.stop(timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        batcher_obj.stop(timeout="1")  # type: ignore[arg-type]


def test_provisioned_resource_rejects_bad_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ProvisionedResource(-1)
    with pytest.raises(TypeError, match="capacity"):
        ProvisionedResource(1.5)  # type: ignore[arg-type]


def test_provisioned_resource_events() -> None:
    limiter = ProvisionedResource(50)
    received: list[batcher.Event] = []
    limiter.events.subscribe(received.append)
    limiter.start()
    limiter.stop()
    limiter.stop()
    assert [(e.name, e.val) for e in received] == [("capacity", 50), ("shutdown", 0)]
    assert limiter.capacity == limiter.max_capacity == 50
