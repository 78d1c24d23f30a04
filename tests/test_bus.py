"""The observer bus: subscribe, unsubscribe, fault isolation, threads."""

from __future__ import annotations

import logging
import threading

import pytest

from batcher import Event, EventBus, Subscription, events


def test_emit_delivers_event_fields() -> None:
    bus = EventBus()
    received: list[Event] = []
    bus.subscribe(received.append)
    bus.emit(events.CAPACITY, 7, "msg", {"k": 1})
    assert received == [Event("capacity", 7, "msg", {"k": 1})]


def test_emit_defaults() -> None:
    bus = EventBus()
    received: list[Event] = []
    bus.subscribe(received.append)
    bus.emit(events.SHUTDOWN)
    assert received[0].val == 0
    assert received[0].msg is None
    assert received[0].metadata is None


def test_unsubscribe_stops_delivery() -> None:
    bus = EventBus()
    received: list[Event] = []
    handle = bus.subscribe(received.append)
    bus.unsubscribe(handle)
    bus.unsubscribe(handle)
    bus.emit(events.PAUSE)
    assert received == []


def test_same_listener_twice_gets_two_handles() -> None:
    bus = EventBus()
    received: list[Event] = []
    first = bus.subscribe(received.append)
    bus.subscribe(received.append)
    bus.unsubscribe(first)
    bus.emit(events.PAUSE)
    assert len(received) == 1


def test_raising_listener_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    received: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.subscribe(broken)
    bus.subscribe(received.append)
    with caplog.at_level(logging.ERROR, logger="batcher"):
        bus.emit(events.ERROR, 1)
    assert len(received) == 1
    assert "listener" in caplog.text


def test_subscribe_rejects_non_callable() -> None:
    bus = EventBus()
    with pytest.raises(TypeError, match="listener"):
        bus.subscribe(42)  # type: ignore[arg-type]


def test_listener_may_unsubscribe_itself() -> None:
    bus = EventBus()
    calls: list[str] = []
    handles: list[Subscription] = []

    def once(event: Event) -> None:
        calls.append(event.name)
        bus.unsubscribe(handles[0])

    handles.append(bus.subscribe(once))
    bus.emit(events.PAUSE)
    bus.emit(events.RESUME)
    assert calls == [events.PAUSE]


def test_concurrent_subscribe_and_emit() -> None:
    bus = EventBus()
    counts = [0] * 8
    lock = threading.Lock()

    def make(i: int) -> object:
        def listener(event: Event) -> None:
            with lock:
                counts[i] += 1

        return listener

    stop = threading.Event()

    def emitter() -> None:
        while not stop.is_set():
            bus.emit(events.CAPACITY)

    threads = [threading.Thread(target=emitter) for _ in range(2)]
    for thread in threads:
        thread.start()
    handles = [bus.subscribe(make(i)) for i in range(8)]  # type: ignore[arg-type]
    for handle in handles[:4]:
        bus.unsubscribe(handle)
    stop.set()
    for thread in threads:
        thread.join()
    before = list(counts)
    bus.emit(events.CAPACITY)
    assert counts[:4] == before[:4]
    assert [c - b for c, b in zip(counts[4:], before[4:], strict=True)] == [1] * 4


def test_event_names_match_go_library() -> None:
    names = {
        events.SHUTDOWN: "shutdown",
        events.PAUSE: "pause",
        events.RESUME: "resume",
        events.AUDIT_FAIL: "audit-fail",
        events.AUDIT_PASS: "audit-pass",
        events.AUDIT_SKIP: "audit-skip",
        events.REQUEST: "request",
        events.FLUSH_START: "flush-start",
        events.FLUSH_DONE: "flush-done",
        events.BATCH: "batch",
        events.ERROR: "error",
        events.CAPACITY: "capacity",
        events.FAILED: "failed",
        events.RELEASED: "released",
        events.ALLOCATED: "allocated",
        events.TARGET: "target",
        events.PROVISION_START: "provision-start",
        events.PROVISION_DONE: "provision-done",
        events.CREATED_CONTAINER: "created-container",
        events.VERIFIED_CONTAINER: "verified-container",
        events.CREATED_BLOB: "created-blob",
        events.VERIFIED_BLOB: "verified-blob",
    }
    for constant, expected in names.items():
        assert constant == expected


def test_event_is_immutable() -> None:
    event = Event("pause", 1)
    with pytest.raises(AttributeError):
        event.val = 2  # type: ignore[misc]
