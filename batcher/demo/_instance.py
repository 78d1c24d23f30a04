"""One demo instance: a process with its own Batcher and SharedResource.

The parent starts each instance with ``run_instance`` in a new process. The
instance writes its share of the records to the SQLite datastore and
reports to the parent through a multiprocessing queue:

* ``("ready", index, None)`` once its Batcher runs and has its reserved
  capacity; it then waits for the start event so all instances begin
  together;
* ``("status", index, Status)`` every STATUS_INTERVAL seconds;
* ``("done", index, Status)`` after it stopped and released its leases;
* ``("failed", index, message)`` if it could not run.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from .. import events
from .._azure import AzureBlobLeaseManager
from .._batcher import Batcher
from .._errors import BatcherStoppedError
from .._logging import log_events
from .._operation import Batch, Operation, Watcher
from .._shared import SharedResource
from ._datastore import Writer, load_input
from ._input import Record
from ._logsetup import configure_logging

__all__ = ["InstanceConfig", "Status", "run_instance"]

logger = logging.getLogger(__name__)

#: Seconds between two status reports to the parent.
STATUS_INTERVAL: Final = 0.25
#: Seconds stop() may spend draining the buffer after the last record was put.
DRAIN_TIMEOUT: Final = 30.0
#: Seconds stop() may spend when the parent asked the instance to stop early.
INTERRUPT_TIMEOUT: Final = 1.0
#: Maximum number of records in one batch, so one transaction stays short.
MAX_BATCH_SIZE: Final = 500


class MessageQueue(Protocol):
    """The part of a multiprocessing queue that an instance uses."""

    def put(self, obj: Any) -> None: ...


class StopSignal(Protocol):
    """The part of a multiprocessing event that an instance uses."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    """Everything one instance process needs; sent to it when it starts."""

    index: int
    connection_string: str
    container: str
    database: Path
    reserved_capacity: int
    shared_capacity: int
    factor: int
    log_level: int
    parent_pid: int

    def __repr__(self) -> str:
        # The connection string is left out: it carries the account key.
        return (
            f"InstanceConfig(index={self.index}, container={self.container!r}, "
            f"database={str(self.database)!r})"
        )


@dataclass(frozen=True, slots=True)
class Status:
    """One instance's state at one moment, as reported to the parent."""

    at: float
    capacity: int
    #: (raise time, cost) of each batch that reached the callback and was
    #: raised in the last second, so the parent can sum any second that ends
    #: at or after ``at``.
    recent_batches: tuple[tuple[float, int], ...]
    buffered: int
    written: int
    total: int
    storage_requests: int


def run_instance(
    config: InstanceConfig,
    messages: MessageQueue,
    start_event: StopSignal,
    stop_event: StopSignal,
) -> None:
    """Run one instance to the end; the entry point of its process.

    Ctrl-C in the terminal reaches every process in the foreground group,
    so instances ignore SIGINT and stop when the parent sets ``stop_event``.
    The parent blocks SIGINT while it starts them, so none can be hit before
    it ignores the signal.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    configure_logging(config.log_level, f"instance {config.index}")
    try:
        instance = _Instance(config, messages, start_event, stop_event)
        instance.run()
    except Exception as error:
        logger.exception("instance %d failed", config.index)
        messages.put(("failed", config.index, f"{type(error).__name__}: {error}"))
        sys.exit(1)


class _Instance:
    def __init__(
        self,
        config: InstanceConfig,
        messages: MessageQueue,
        start_event: StopSignal,
        stop_event: StopSignal,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._messages = messages
        self._start_event = start_event
        self._stop_event = stop_event
        self._clock = clock
        self._records = load_input(config.database, config.index)
        self._writer = Writer(config.database, config.index, clock)
        self._manager = AzureBlobLeaseManager.from_connection_string(
            config.connection_string, config.container
        )
        self._shared = SharedResource(
            config.reserved_capacity,
            config.shared_capacity,
            self._manager,
            config.factor,
            owner=f"demo-instance-{config.index}-{os.getpid()}",
        )
        self._runner = Batcher(self._shared)
        self._watcher = Watcher(self._write_batch, max_batch_size=MAX_BATCH_SIZE)
        # Guards _sent, _written, _abandoned and _capacity_changes, which
        # worker threads and the capacity thread update and the main thread
        # reads.
        self._counters_lock = threading.Lock()
        self._sent: collections.deque[tuple[float, int]] = collections.deque()
        self._written = 0
        self._abandoned = 0
        self._capacity_changes: list[tuple[float, int]] = []

        label = f"instance {config.index}"
        log_events(self._runner, label=f"{label} batcher")
        log_events(self._shared, label=f"{label} shared capacity")
        self._shared.events.subscribe(self._on_shared_event)

    def run(self) -> None:
        """Start, write every record or stop early, then store the counters."""
        try:
            self._run_batcher()
        finally:
            with self._counters_lock:
                changes = list(self._capacity_changes)
            self._writer.record_capacity(changes)
            self._writer.record_stop(self._manager.request_count)
            self._manager.close()
            self._writer.close()
        self._messages.put(("done", self._config.index, self._status()))

    def _run_batcher(self) -> None:
        self._runner.start()
        feeder: threading.Thread | None = None
        try:
            self._messages.put(("ready", self._config.index, None))
            if not self._wait_for_start():
                return
            feeder = threading.Thread(
                target=self._feed,
                name=f"batcher-demo-feed-{self._config.index}",
                daemon=True,
            )
            feeder.start()
            self._report_until_done()
        finally:
            timeout = INTERRUPT_TIMEOUT if self._stop_requested() else DRAIN_TIMEOUT
            unprocessed = self._runner.stop(timeout)
            if feeder is not None:
                feeder.join()
        if unprocessed:
            logger.info(
                "instance %d stopped early: %d operations left unprocessed",
                self._config.index,
                len(unprocessed),
            )

    def _wait_for_start(self) -> bool:
        """Wait until the parent starts all instances; False if a stop was requested."""
        while not self._start_event.wait(STATUS_INTERVAL):
            if self._stop_requested():
                return False
        return not self._stop_requested()

    def _report_until_done(self) -> None:
        """Send status reports until every record is written or a stop request."""
        total = len(self._records)
        next_report = self._clock()
        while not self._stop_requested():
            with self._counters_lock:
                if self._written + self._abandoned >= total:
                    return
            now = self._clock()
            if now >= next_report:
                self._messages.put(("status", self._config.index, self._status()))
                next_report = max(next_report + STATUS_INTERVAL, now)
            self._stop_event.wait(min(max(next_report - now, 0.0), 0.05))

    def _stop_requested(self) -> bool:
        # An instance whose parent died is never asked to stop, so it stops itself.
        return self._stop_event.is_set() or os.getppid() != self._config.parent_pid

    def _feed(self) -> None:
        for record in self._records:
            operation = Operation(self._watcher, record.cost, record, batchable=True)
            try:
                self._runner.put(operation)
            except BatcherStoppedError:
                return

    def _write_batch(self, batch: Batch) -> None:
        """Watcher callback: write one batch in one transaction."""
        handed_at = self._clock()
        records: list[Record] = [op.payload for op in batch]
        cost = sum(op.cost for op in batch)
        with self._counters_lock:
            self._sent.append((batch.raised_at, cost))
        try:
            self._writer.write(records, batch.raised_at, handed_at)
        except sqlite3.Error as error:
            logger.warning(
                "instance %d: writing a batch of %d records failed: %s; "
                "putting them back in the buffer",
                self._config.index,
                len(records),
                error,
            )
            self._put_back(batch)
            return
        with self._counters_lock:
            self._written += len(records)

    def _put_back(self, operations: list[Operation]) -> None:
        for position, operation in enumerate(operations):
            try:
                self._runner.put(operation)
            except BatcherStoppedError:
                with self._counters_lock:
                    self._abandoned += len(operations) - position
                return

    def _on_shared_event(self, event: events.Event) -> None:
        if event.name == events.CAPACITY:
            with self._counters_lock:
                self._capacity_changes.append((self._clock(), event.val))

    def _status(self) -> Status:
        now = self._clock()
        with self._counters_lock:
            while self._sent and self._sent[0][0] <= now - 1.0:
                self._sent.popleft()
            recent = tuple(self._sent)
            written = self._written
        return Status(
            at=now,
            capacity=self._shared.capacity,
            recent_batches=recent,
            buffered=self._runner.operations_in_buffer,
            written=written,
            total=len(self._records),
            storage_requests=self._manager.request_count,
        )
