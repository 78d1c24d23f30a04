"""Unit tests of SharedResource on an in-memory lease manager and a fake clock.

Most tests drive ``step()`` directly on an instance that was not started, so
lease calls run on the test's thread and time moves only when the test
advances it.
"""

from __future__ import annotations

import datetime
import random
import threading
import time
from typing import Any

import pytest
from freezegun import freeze_time

from batcher import (
    Event,
    LeaseStoreError,
    SharedCapacityNotProvisionedError,
    SharedResource,
    WrongOrderError,
    events,
)
from batcher._shared import (
    ERROR_SUMMARY_INTERVAL,
    MIN_HOLD,
    REPROVISION_INTERVAL,
    SAFETY_MARGIN,
    LeaseHold,
)

from ._fake_lease import FakeClock, FakeLeaseManager
from ._helpers import Recorder

DURATION = 15.0
HOLD = DURATION - SAFETY_MARGIN
RENEW_PERIOD = DURATION / 2
PARTITIONS = 10
FULL = 500 + PARTITIONS * 1000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def manager(clock: FakeClock) -> FakeLeaseManager:
    return FakeLeaseManager(clock)


def make(
    clock: FakeClock, manager: FakeLeaseManager, owner: str = "a", **options: Any
) -> SharedResource:
    settings: dict[str, Any] = {
        "reserved_capacity": 500,
        "shared_capacity": PARTITIONS * 1000,
        "lease_manager": manager,
        "factor": 1000,
        "owner": owner,
        # Tests of the handover delay set it themselves.
        "usage_window": 0.0,
        "clock": clock,
    }
    settings.update(options)
    return SharedResource(**settings)


def ramp(resource: SharedResource, target: int = 1_000_000) -> None:
    resource.give_me(target)
    resource.step()


def lease_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name == "batcher-shared-capacity" or t.name.startswith("batcher-lease-")
    ]


# Arguments and lifecycle.


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"reserved_capacity": -1}, ValueError, "reserved_capacity"),
        ({"reserved_capacity": True}, TypeError, "reserved_capacity"),
        ({"shared_capacity": 1.5}, TypeError, "shared_capacity"),
        ({"shared_capacity": -5}, ValueError, "shared_capacity"),
        ({"factor": 0}, ValueError, "factor"),
        ({"factor": False}, TypeError, "factor"),
        ({"max_interval": 0}, ValueError, "max_interval"),
        ({"max_interval": float("inf")}, ValueError, "max_interval"),
        ({"max_interval": float("nan")}, ValueError, "max_interval"),
        ({"max_interval": "1"}, TypeError, "max_interval"),
        ({"lease_duration": 14}, ValueError, "lease_duration"),
        ({"lease_duration": 61}, ValueError, "lease_duration"),
        ({"lease_duration": 15.5}, ValueError, "lease_duration"),
        ({"max_parallel": 0}, ValueError, "max_parallel"),
        ({"owner": ""}, ValueError, "owner"),
        ({"owner": "caf\u00e9"}, ValueError, "owner"),
        ({"owner": 7}, TypeError, "owner"),
        ({"release_delay": -1}, ValueError, "release_delay"),
        ({"clock": 3}, TypeError, "clock"),
        ({"lease_manager": object()}, TypeError, "lease_manager"),
    ],
)
def test_constructor_rejects_bad_argument(
    clock: FakeClock,
    manager: FakeLeaseManager,
    options: dict[str, Any],
    error: type[Exception],
    fragment: str,
) -> None:
    before = lease_threads()
    with pytest.raises(error, match=fragment):
        make(clock, manager, **options)
    assert lease_threads() == before


def test_shared_capacity_without_lease_manager_raises() -> None:
    with pytest.raises(SharedCapacityNotProvisionedError):
        SharedResource(100, 1000)
    reserved_only = SharedResource(100)
    with pytest.raises(SharedCapacityNotProvisionedError):
        reserved_only.set_shared_capacity(1000)


def test_reserved_only_runs_without_lease_manager() -> None:
    resource = SharedResource(300)
    recorder = Recorder(resource.events)
    resource.start()
    resource.give_me(10_000)
    assert resource.capacity == 300
    assert resource.max_capacity == 300
    assert lease_threads() == []
    resource.stop()
    assert recorder.names() == ["capacity", "target", "shutdown"]


def test_start_twice_or_after_stop_raises(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    resource.start()
    try:
        with pytest.raises(WrongOrderError):
            resource.start()
    finally:
        resource.stop()
    with pytest.raises(WrongOrderError):
        resource.start()
    assert lease_threads() == []


def test_start_failure_leaves_instance_new(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    manager.fault = LeaseStoreError("storage unreachable")
    with pytest.raises(LeaseStoreError):
        resource.start()
    assert lease_threads() == []
    manager.fault = None
    resource.start()
    resource.stop()


# Targets and provisioning.


@pytest.mark.parametrize(
    ("reserved", "target", "partitions"),
    [
        (0, 8750, 9),
        (500, 8750, 9),
        (500, 8500, 8),
        (500, 500, 0),
        (500, 0, 0),
        (0, 1, 1),
        (0, 50_000, PARTITIONS),
    ],
)
def test_give_me_emits_partitions_wanted(
    clock: FakeClock,
    manager: FakeLeaseManager,
    reserved: int,
    target: int,
    partitions: int,
) -> None:
    resource = make(clock, manager, reserved_capacity=reserved)
    recorder = Recorder(resource.events)
    resource.give_me(target)
    assert [(e.name, e.val) for e in recorder.events] == [("target", partitions)]


def test_give_me_rejects_negative_target(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    with pytest.raises(ValueError, match="target"):
        resource.give_me(-1)


def test_start_provisions_in_event_order(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    first = make(clock, manager)
    recorder = Recorder(first.events)
    first.start()
    first.stop()
    expected = [
        ("provision-start", PARTITIONS),
        ("created-container", 0),
        *[("created-blob", i) for i in range(PARTITIONS)],
        ("provision-done", PARTITIONS),
        ("capacity", 500),
        ("shutdown", 0),
    ]
    assert [(e.name, e.val) for e in recorder.events] == expected

    second = make(clock, manager, owner="b")
    recorder = Recorder(second.events)
    second.start()
    second.stop()
    names = recorder.names()
    assert names[1] == "verified-container"
    assert names.count("verified-blob") == PARTITIONS


def test_partitions_capped_at_500_with_error(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager, shared_capacity=600_000)
    recorder = Recorder(resource.events)
    resource.start()
    resource.stop()
    errors = recorder.of(events.ERROR)
    assert len(errors) == 1
    assert "600 partitions" in (errors[0].msg or "")
    assert recorder.of(events.PROVISION_START)[0].val == 500
    assert resource.partition_count == 500
    assert resource.max_capacity == 500 + 500_000
    assert manager.blobs == set(range(500))


def test_set_shared_capacity_provisions_new_partitions(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    resource.start()
    try:
        recorder = Recorder(resource.events)
        resource.set_shared_capacity(12_000)
        assert recorder.of(events.PROVISION_START)[0].val == 12
        assert manager.blobs == set(range(12))
        assert resource.max_capacity == 12_500
    finally:
        resource.stop()


def test_set_shared_capacity_smaller_releases_extra(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    ramp(resource)
    resource.set_shared_capacity(4000)
    resource.step()
    assert sorted(resource.holds()) == [0, 1, 2, 3]
    assert resource.capacity == 4500
    assert all(manager.holder(i) is None for i in range(4, PARTITIONS))


def test_set_reserved_capacity_emits_capacity(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    recorder = Recorder(resource.events)
    resource.set_reserved_capacity(800)
    assert resource.capacity == 800
    assert [(e.name, e.val) for e in recorder.events] == [("capacity", 800)]


# Acquiring, holding and renewing.


def test_ramp_takes_all_partitions_in_one_step(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    recorder = Recorder(resource.events)
    ramp(resource)
    assert resource.capacity == FULL
    assert manager.count_calls("partitions") == 1
    assert manager.count_calls("acquire") == PARTITIONS
    assert sorted(e.val for e in recorder.of(events.ALLOCATED)) == list(
        range(PARTITIONS)
    )
    assert [e.val for e in recorder.of(events.CAPACITY)][-1] == FULL
    assert all(manager.owners[i] == "a" for i in range(PARTITIONS))


def test_hold_ends_margin_before_server_lease(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    recorder = Recorder(resource.events)
    sent_at = clock()
    ramp(resource)
    for event in recorder.of(events.ALLOCATED):
        hold = event.metadata
        assert isinstance(hold, LeaseHold)
        assert hold.partition == event.val
        assert hold.counted_from == sent_at
        assert hold.counted_until == sent_at + HOLD
        server_end = manager.expires_at(event.val)
        assert server_end is not None
        assert hold.counted_until <= server_end - SAFETY_MARGIN


def test_capacity_drops_at_hold_end_without_step(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    ramp(resource)
    clock.advance(HOLD - 0.001)
    assert resource.capacity == FULL
    clock.advance(0.001)
    assert resource.capacity == 500
    assert resource.holds() == {}


def test_late_step_reports_release_at_hold_end(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    recorder = Recorder(resource.events)
    start = clock()
    ramp(resource, target=1500)
    clock.advance(40)
    resource.give_me(0)
    resource.step()
    released = recorder.of(events.RELEASED)
    assert [e.val for e in released] == [resource_index(recorder)]
    assert released[0].metadata.counted_until == start + HOLD
    assert recorder.of(events.CAPACITY)[-1].val == 500


def resource_index(recorder: Recorder) -> int:
    return recorder.of(events.ALLOCATED)[0].val


def test_renews_held_leases_before_expiry(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    ramp(resource)
    clock.advance(RENEW_PERIOD)
    renewed_at = clock()
    resource.step()
    assert manager.count_calls("renew") == PARTITIONS
    assert manager.count_calls("acquire") == PARTITIONS
    assert all(h.counted_until == renewed_at + HOLD for h in resource.holds().values())
    clock.advance(HOLD - 0.5)
    assert resource.capacity == FULL


def test_satisfied_instance_only_renews(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    ramp(resource)
    requests = manager.request_count
    for _ in range(120):
        clock.advance(0.5)
        resource.give_me(1_000_000)
        resource.step()
        assert resource.capacity == FULL
    assert manager.count_calls("partitions") == 1
    assert manager.request_count - requests == 8 * PARTITIONS
    assert resource.storage_requests == manager.request_count


def test_release_after_demand_falls(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    recorder = Recorder(resource.events)
    ramp(resource)
    resource.give_me(3500)
    resource.step()
    assert resource.capacity == FULL
    clock.advance(1.0)
    resource.step()
    assert resource.capacity == 3500
    assert len(recorder.of(events.RELEASED)) == PARTITIONS - 3
    assert sum(manager.holder(i) is not None for i in range(PARTITIONS)) == 3
    assert recorder.of(events.CAPACITY)[-1].val == 3500


def test_brief_dip_keeps_partitions(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    ramp(resource)
    resource.give_me(0)
    clock.advance(0.6)
    resource.step()
    resource.give_me(1_000_000)
    clock.advance(0.6)
    resource.step()
    assert resource.capacity == FULL
    assert manager.count_calls("release") == 0


def test_stop_releases_every_lease(clock: FakeClock, manager: FakeLeaseManager) -> None:
    resource = make(clock, manager)
    ramp(resource)
    recorder = Recorder(resource.events)
    clock.advance(2)
    resource.stop()
    resource.stop()
    assert all(manager.holder(i) is None for i in range(PARTITIONS))
    released = recorder.of(events.RELEASED)
    assert len(released) == PARTITIONS
    assert all(e.metadata.counted_until == clock() for e in released)
    assert recorder.names()[-2:] == ["capacity", "shutdown"]
    assert recorder.of(events.CAPACITY)[-1].val == 500
    assert resource.capacity == 500


def test_capacity_capped_at_max_capacity(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager, shared_capacity=10_500)
    ramp(resource)
    assert len(resource.holds()) == 11
    assert resource.capacity == resource.max_capacity == 11_000


# Late responses and storage faults.


def test_too_late_response_is_not_counted(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager, max_parallel=1)
    recorder = Recorder(resource.events)
    manager.latency = HOLD - MIN_HOLD + 0.01
    manager.slow_methods = {"acquire"}
    ramp(resource, target=1500)
    assert resource.capacity == 500
    assert recorder.of(events.ALLOCATED) == []
    manager.latency = 0
    resource.give_me(0)
    resource.step()
    assert manager.count_calls("release") == manager.count_calls("acquire")
    assert all(manager.holder(i) is None for i in range(PARTITIONS))


def test_slow_response_within_hold_is_counted(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    manager.latency = HOLD - MIN_HOLD - 0.5
    manager.slow_methods = {"acquire"}
    ramp(resource, target=1500)
    assert resource.capacity == 1500


def test_too_late_renewal_stops_counting(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    recorder = Recorder(resource.events)
    start = clock()
    ramp(resource, target=1500)
    [index] = resource.holds()
    clock.advance(RENEW_PERIOD)
    manager.latency = HOLD
    # Acquires are as slow, so the step cannot take the partition back
    # through a new lease, which would depend on which free one it picks.
    manager.slow_methods = {"renew", "acquire"}
    resource.give_me(1500)
    resource.step()
    assert index not in resource.holds()
    released = [e for e in recorder.of(events.RELEASED) if e.val == index]
    assert len(released) == 1
    assert released[0].metadata.counted_until == start + HOLD
    assert manager.holder(index) is None


def test_storage_errors_are_rate_limited(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    ramp(resource)
    recorder = Recorder(resource.events)
    error_times: list[float] = []
    resource.events.subscribe(
        lambda e: error_times.append(clock()) if e.name == events.ERROR else None
    )
    manager.fault = LeaseStoreError("storage unreachable", status_code=503)
    for _ in range(80):
        clock.advance(0.5)
        resource.give_me(1_000_000)
        resource.step()
        assert resource.capacity >= 500

    errors = recorder.of(events.ERROR)
    assert errors[0].val == 1
    assert isinstance(errors[0].metadata, LeaseStoreError)
    assert all(
        later - earlier >= ERROR_SUMMARY_INTERVAL
        for earlier, later in zip(error_times, error_times[1:], strict=False)
    )
    assert len(errors) <= 1 + 40 / ERROR_SUMMARY_INTERVAL
    assert sum(e.val for e in errors) <= resource.storage_errors
    assert resource.storage_errors > len(errors)
    assert resource.capacity == 500

    manager.fault = None
    clock.advance(0.5)
    resource.step()
    assert resource.capacity == FULL


def test_missing_container_is_provisioned_again(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    recorder = Recorder(resource.events)
    manager.fault = LeaseStoreError(
        "container not found", status_code=404, error_code="ContainerNotFound"
    )
    ramp(resource)
    assert resource.capacity == 500
    # The first provisioning failed too, so the next waits for its interval.
    assert manager.count_calls("provision") == 1
    manager.fault = None
    clock.advance(REPROVISION_INTERVAL)
    resource.step()
    assert manager.count_calls("provision") == 2
    assert recorder.of(events.PROVISION_DONE)[0].val == PARTITIONS
    assert manager.blobs == set(range(PARTITIONS))
    assert resource.capacity == FULL
    clock.advance(REPROVISION_INTERVAL)
    resource.step()
    assert manager.count_calls("provision") == 2


def test_error_in_listener_does_not_stop_step(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)

    def explode(event: Event) -> None:
        raise RuntimeError("listener bug")

    resource.events.subscribe(explode)
    ramp(resource)
    assert resource.capacity == FULL


# Breaking and fair share.


def test_lost_renewal_stops_counting_and_releases(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager)
    recorder = Recorder(resource.events)
    ramp(resource)
    manager.break_lease(3)
    clock.advance(RENEW_PERIOD)
    resource.step()
    assert 3 not in resource.holds()
    assert resource.capacity == FULL - 1000
    assert [e.val for e in recorder.of(events.RELEASED)] == [3]
    assert manager.holder(3) is None


def test_own_breaking_lease_dropped_at_listing(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    other = make(clock, manager, owner="b")
    other.give_me(2500)
    other.step()
    resource = make(clock, manager)
    ramp(resource)
    assert len(resource.holds()) == PARTITIONS - 2
    mine = sorted(resource.holds())[0]
    manager.break_lease(mine)
    clock.advance(4 * 0.5)
    resource.step()
    assert mine not in resource.holds()
    assert manager.holder(mine) is None


def test_lease_lost_by_storage_dropped_at_listing(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    other = make(clock, manager, owner="b")
    other.give_me(2500)
    other.step()
    resource = make(clock, manager)
    # Demand above what is free keeps this instance listing.
    ramp(resource)
    lost = sorted(resource.holds())[0]
    # Storage forgets a confirmed lease, as an emulator restored from an
    # older save does.
    del manager._leases[lost]
    clock.advance(4 * 0.5)
    resource.give_me(1_000_000)
    resource.step()
    assert lost not in resource.holds()


def test_waiter_breaks_leases_of_greedy_holder(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    greedy = make(clock, manager, owner="greedy")
    ramp(greedy)
    waiter = make(clock, manager, owner="waiter")
    ramp(waiter)
    assert manager.count_calls("break_lease") == PARTITIONS // 2
    assert waiter.capacity == 500

    # Later listings wait for the broken leases instead of breaking more.
    for _ in range(10):
        clock.advance(0.5)
        waiter.give_me(1_000_000)
        waiter.step()
        greedy.step()
        assert len(greedy.holds()) + len(waiter.holds()) <= PARTITIONS
    assert manager.count_calls("break_lease") == PARTITIONS // 2

    clock.advance(RENEW_PERIOD)
    greedy.give_me(1_000_000)
    greedy.step()
    assert len(greedy.holds()) == PARTITIONS // 2
    waiter.give_me(1_000_000)
    waiter.step()
    assert len(waiter.holds()) == PARTITIONS // 2

    # The greedy instance keeps to its fair share for a while.
    for _ in range(20):
        clock.advance(0.5)
        greedy.give_me(1_000_000)
        greedy.step()
        waiter.give_me(1_000_000)
        waiter.step()
    assert len(greedy.holds()) == PARTITIONS // 2
    assert len(waiter.holds()) == PARTITIONS // 2


def test_three_instances_share_fairly(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    random.seed(7)
    count = 18
    names = ["a", "b", "c"]
    resources = [
        make(clock, manager, owner=name, shared_capacity=count * 1000) for name in names
    ]
    counted: dict[str, list[int]] = {name: [] for name in names}
    ramp(resources[0])
    for tick in range(160):
        clock.advance(0.25)
        for resource in resources[: 1 + min(tick // 4, 2)]:
            resource.give_me(1_000_000)
            resource.step()
        total = sum(len(r.holds()) for r in resources)
        assert total <= count
        for name, resource in zip(names, resources, strict=True):
            counted[name].append(len(resource.holds()))
    # Over the last 10 s each instance holds at least half its fair share.
    for name in names:
        last = counted[name][-40:]
        assert sum(last) / len(last) >= count / 3 / 2, (name, last)


# Threads.


def test_threads_named_and_joined_at_stop() -> None:
    manager = FakeLeaseManager(time.monotonic)
    resource = SharedResource(
        500, PARTITIONS * 1000, manager, 1000, max_interval=30, max_parallel=3
    )
    resource.start()
    try:
        names = lease_threads()
        assert "batcher-shared-capacity" in names
        assert {"batcher-lease-0", "batcher-lease-1", "batcher-lease-2"} <= set(names)
        # max_interval is long, so only the wake-up on a rise can ramp quickly.
        resource.give_me(1_000_000)
        deadline = time.monotonic() + 10
        while resource.capacity < FULL and time.monotonic() < deadline:
            time.sleep(0.01)
        assert resource.capacity == FULL
    finally:
        resource.stop()
    assert lease_threads() == []
    assert all(manager.holder(i) is None for i in range(PARTITIONS))


def test_release_waits_for_usage_window(
    clock: FakeClock, manager: FakeLeaseManager
) -> None:
    resource = make(clock, manager, usage_window=1.0, release_delay=0.0)
    ramp(resource, target=500 + 3000)
    assert len(resource.holds()) == 3
    resource.give_me(500 + 1000)
    clock.advance(0.1)
    resource.step()
    assert len(resource.holds()) == 1
    assert resource.capacity == 1500
    # Not counted any more, but its capacity may have been spent within
    # the last second, so nobody else may take it yet.
    held = [i for i in range(PARTITIONS) if manager.holder(i) is not None]
    assert len(held) == 3
    clock.advance(0.5)
    resource.step()
    assert sum(manager.holder(i) is not None for i in range(PARTITIONS)) == 3
    clock.advance(0.5)
    resource.step()
    assert sum(manager.holder(i) is not None for i in range(PARTITIONS)) == 1


def test_stop_releases_after_usage_window(manager: FakeLeaseManager) -> None:
    resource = SharedResource(
        500, PARTITIONS * 1000, manager, 1000, usage_window=0.2, owner="a"
    )
    manager.clock = time.monotonic
    resource.start()
    try:
        resource.give_me(1_000_000)
        deadline = time.monotonic() + 5
        while len(resource.holds()) < PARTITIONS and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(resource.holds()) == PARTITIONS
    finally:
        started = time.monotonic()
        resource.stop()
    assert time.monotonic() - started >= 0.2
    assert all(manager.holder(i) is None for i in range(PARTITIONS))


def test_wall_clock_jumps_leave_holds_unaffected() -> None:
    """Holds run on time.monotonic, bound when the SharedResource is built,
    so moving the wall clock a day either way changes no hold."""
    manager = FakeLeaseManager(time.monotonic)
    resource = SharedResource(
        500, PARTITIONS * 1000, manager, 1000, owner="a", usage_window=0.0
    )
    with freeze_time("2030-01-01 12:00:00") as frozen:
        ramp(resource)
        before = resource.holds()
        assert len(before) == PARTITIONS

        frozen.move_to(datetime.datetime(2030, 1, 2, 12))
        resource.step()
        after_forward = resource.holds()
        capacity_forward = resource.capacity

        frozen.move_to(datetime.datetime(2029, 12, 30, 12))
        resource.step()
        after_backward = resource.holds()
        capacity_backward = resource.capacity
    assert after_forward == before
    assert capacity_forward == FULL
    assert after_backward == before
    assert capacity_backward == FULL
    resource.stop()
