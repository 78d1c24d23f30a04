"""Tests for batcher.log_events."""

from __future__ import annotations

import logging

import pytest

import batcher
from batcher import Batcher, EventBus, Operation, ProvisionedResource, Watcher, events

LOGGER_NAME = "test.batcher.events"


@pytest.fixture
def logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def records_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER_NAME]


@pytest.mark.parametrize(
    ("name", "expected_level"),
    [
        (events.ALLOCATED, logging.INFO),
        (events.RELEASED, logging.INFO),
        (events.CAPACITY, logging.INFO),
        (events.SHUTDOWN, logging.INFO),
        (events.PAUSE, logging.INFO),
        (events.RESUME, logging.INFO),
        (events.PROVISION_START, logging.INFO),
        (events.PROVISION_DONE, logging.INFO),
        (events.CREATED_CONTAINER, logging.INFO),
        (events.AUDIT_FAIL, logging.WARNING),
        (events.ERROR, logging.WARNING),
        (events.FAILED, logging.DEBUG),
        (events.TARGET, logging.DEBUG),
        (events.REQUEST, logging.DEBUG),
        (events.FLUSH_START, logging.DEBUG),
        (events.FLUSH_DONE, logging.DEBUG),
        (events.BATCH, logging.DEBUG),
        (events.AUDIT_PASS, logging.DEBUG),
        (events.AUDIT_SKIP, logging.DEBUG),
        (events.VERIFIED_BLOB, logging.DEBUG),
        ("some-future-event", logging.DEBUG),
    ],
)
def test_log_events_level_per_event(
    caplog: pytest.LogCaptureFixture,
    logger: logging.Logger,
    name: str,
    expected_level: int,
) -> None:
    bus = EventBus()
    batcher.log_events(bus, logger)
    caplog.set_level(logging.DEBUG, LOGGER_NAME)

    bus.emit(name, 3, "details")

    records = records_of(caplog)
    assert len(records) == 1
    assert records[0].levelno == expected_level


def test_log_events_uses_percent_args(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    bus = EventBus()
    batcher.log_events(bus, logger, label="instance 2")
    caplog.set_level(logging.DEBUG, LOGGER_NAME)

    bus.emit(events.ALLOCATED, 7)
    bus.emit(events.AUDIT_FAIL, 0, "target was 5, reset to 0")

    allocated, audit = records_of(caplog)
    assert allocated.msg == "%s leased partition %d"
    assert allocated.args == ("instance 2", 7)
    assert allocated.getMessage() == "instance 2 leased partition 7"
    assert audit.getMessage() == "instance 2 audit failed: target was 5, reset to 0"


def test_log_events_error_carries_exception(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    bus = EventBus()
    batcher.log_events(bus, logger, error_level=logging.ERROR)
    caplog.set_level(logging.DEBUG, LOGGER_NAME)
    error = ConnectionError("storage unreachable")

    bus.emit(events.ERROR, 0, "renewing partition 3 failed", error)

    (record,) = records_of(caplog)
    assert record.levelno == logging.ERROR
    assert (
        record.getMessage() == "events survived an error: renewing partition 3 failed"
    )
    assert record.exc_info is not None
    assert record.exc_info[1] is error


def test_log_events_error_without_exception(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    bus = EventBus()
    batcher.log_events(bus, logger)
    caplog.set_level(logging.DEBUG, LOGGER_NAME)

    bus.emit(events.ERROR)

    (record,) = records_of(caplog)
    assert record.getMessage() == "events survived an error: no details"
    assert not record.exc_info


def test_log_events_never_logs_batch_payloads(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    bus = EventBus()
    batcher.log_events(bus, logger)
    caplog.set_level(logging.DEBUG, LOGGER_NAME)
    watcher = Watcher(lambda batch: None)
    operations = [Operation(watcher, 1, payload="secret-payload-42")]

    bus.emit(events.BATCH, 1, None, operations)
    bus.emit("some-future-event", 1, None, operations)

    assert "secret-payload-42" not in caplog.text
    first, second = records_of(caplog)
    assert first.getMessage() == "events raised a batch of 1 operations"
    assert all("secret-payload-42" not in repr(arg) for arg in first.args or ())
    assert all("secret-payload-42" not in repr(arg) for arg in second.args or ())


def test_log_events_levels_are_configurable(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    bus = EventBus()
    batcher.log_events(
        bus,
        logger,
        level=logging.WARNING,
        detail_level=logging.INFO,
        problem_level=logging.ERROR,
    )
    caplog.set_level(logging.DEBUG, LOGGER_NAME)

    bus.emit(events.CAPACITY, 100)
    bus.emit(events.TARGET, 2)
    bus.emit(events.AUDIT_FAIL, 0, "inflight was 1, reset to 0")

    levels = [r.levelno for r in records_of(caplog)]
    assert levels == [logging.WARNING, logging.INFO, logging.ERROR]


def test_log_events_skips_disabled_levels(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    bus = EventBus()
    batcher.log_events(bus, logger)
    caplog.set_level(logging.INFO, LOGGER_NAME)

    bus.emit(events.FLUSH_DONE, 10)
    bus.emit(events.CAPACITY, 10)

    names = [r.getMessage() for r in records_of(caplog)]
    assert names == ["events capacity is now 10"]


def test_log_events_unsubscribe_stops_logging(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    bus = EventBus()
    subscription = batcher.log_events(bus, logger)
    caplog.set_level(logging.DEBUG, LOGGER_NAME)

    bus.unsubscribe(subscription)
    bus.emit(events.CAPACITY, 10)

    assert records_of(caplog) == []
    assert not bus.has_listeners


def test_log_events_default_logger_and_label(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = ProvisionedResource(50)
    batcher.log_events(limiter)
    caplog.set_level(logging.DEBUG, "batcher.events")

    limiter.start()
    limiter.stop()

    messages = [r.getMessage() for r in caplog.records if r.name == "batcher.events"]
    assert messages == [
        "ProvisionedResource capacity is now 50",
        "ProvisionedResource shut down; 0 operations returned unprocessed",
    ]


def test_log_events_on_batcher(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    runner = Batcher(pause_time=0.01)
    batcher.log_events(runner, logger)
    caplog.set_level(logging.DEBUG, LOGGER_NAME)

    runner.pause()
    runner.stop(timeout=1.0)

    messages = [r.getMessage() for r in records_of(caplog)]
    assert messages == [
        "Batcher paused for 10 ms",
        "Batcher shut down; 0 operations returned unprocessed",
    ]


@pytest.mark.parametrize("source", [object(), None, "events"])
def test_log_events_rejects_source_without_bus(source: object) -> None:
    with pytest.raises(TypeError, match="EventBus"):
        batcher.log_events(source)
