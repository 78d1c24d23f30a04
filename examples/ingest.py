"""The ingest service that the Flask and Django examples wrap.

A client posts ``{"records": [{"id": ..., "cost": 3, ...}, ...]}``. The
service checks the body, puts one batchable operation per record into the
process's Batcher under a watcher made for this request, and waits until
every batch of the request was written to SQLite, one transaction per batch.
The web framework only turns the returned ``IngestResponse`` into HTTP.

Configuration comes from environment variables (see ``IngestSettings``).
With ``AZURE_STORAGE_CONNECTION_STRING`` set, the Batcher's capacity is a
SharedResource whose shared part moves between processes through blob
leases. Without it, each process has a fixed ``INGEST_RESERVED_CAPACITY``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from batcher import (
    AzureBlobLeaseManager,
    Batcher,
    BatcherStoppedError,
    BufferFullError,
    LeaseManager,
    Operation,
    ProvisionedResource,
    RateLimiter,
    SharedResource,
    Watcher,
)

__all__ = [
    "IngestResponse",
    "IngestService",
    "IngestSettings",
    "InvalidRequestError",
    "Record",
    "SQLiteStore",
    "build_rate_limiter",
    "parse_records",
]

logger = logging.getLogger(__name__)

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_SECONDS: Final = 1
# put() never blocks (error_on_full_buffer), so a request decides whether it
# was accepted within microseconds of its last put(). A callback waits this
# long for that decision before it writes anything.
_DECISION_WAIT_SECONDS: Final = 5.0


@dataclass(frozen=True)
class IngestSettings:
    """Configuration of one process's ingest service.

    Capacities are in cost units per second. ``connection_string`` is left
    out of the repr because it contains the storage account key.
    """

    database: Path
    connection_string: str | None = field(default=None, repr=False)
    container: str = "batcher-ingest"
    reserved_capacity: int = 100
    shared_capacity: int = 0
    factor: int = 100
    buffer_size: int = 10_000
    max_batch_size: int = 100
    request_timeout: float = 30.0
    max_records: int = 10_000

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> IngestSettings:
        """Read the settings from environment variables.

        ``INGEST_DATABASE`` (SQLite file path) is required. The others are
        optional: ``AZURE_STORAGE_CONNECTION_STRING``, ``INGEST_CONTAINER``,
        ``INGEST_RESERVED_CAPACITY``, ``INGEST_SHARED_CAPACITY``,
        ``INGEST_FACTOR`` (capacity per lease partition),
        ``INGEST_BUFFER_SIZE``, ``INGEST_MAX_BATCH_SIZE``,
        ``INGEST_REQUEST_TIMEOUT`` (seconds) and ``INGEST_MAX_RECORDS``.

        Raises:
            ValueError: a variable is missing or not a valid number.
        """
        env = os.environ if environ is None else environ
        database = env.get("INGEST_DATABASE")
        if not database:
            raise ValueError(
                "INGEST_DATABASE is not set; set it to the path of the SQLite file "
                "that receives the records"
            )
        defaults = cls(database=Path(database))
        return cls(
            database=Path(database),
            connection_string=env.get("AZURE_STORAGE_CONNECTION_STRING") or None,
            container=env.get("INGEST_CONTAINER") or defaults.container,
            reserved_capacity=_env_int(
                env, "INGEST_RESERVED_CAPACITY", defaults.reserved_capacity
            ),
            shared_capacity=_env_int(
                env, "INGEST_SHARED_CAPACITY", defaults.shared_capacity
            ),
            factor=_env_int(env, "INGEST_FACTOR", defaults.factor, minimum=1),
            buffer_size=_env_int(
                env, "INGEST_BUFFER_SIZE", defaults.buffer_size, minimum=1
            ),
            max_batch_size=_env_int(
                env, "INGEST_MAX_BATCH_SIZE", defaults.max_batch_size
            ),
            request_timeout=_env_seconds(
                env, "INGEST_REQUEST_TIMEOUT", defaults.request_timeout
            ),
            max_records=_env_int(
                env, "INGEST_MAX_RECORDS", defaults.max_records, minimum=1
            ),
        )


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds above 0")
    return value


def build_rate_limiter(
    settings: IngestSettings,
) -> tuple[RateLimiter, LeaseManager | None]:
    """Build the rate limiter and the lease manager it uses, if any.

    With a connection string: a SharedResource on Azure blob leases in
    ``settings.container``. Without: a ProvisionedResource with the
    reserved capacity. The caller closes the lease manager after stopping.
    """
    if settings.connection_string is None:
        logger.info(
            "no storage connection string configured; capacity is fixed at %d "
            "per second in this process",
            settings.reserved_capacity,
        )
        return ProvisionedResource(settings.reserved_capacity), None

    lease_manager = AzureBlobLeaseManager.from_connection_string(
        settings.connection_string, settings.container
    )
    rate_limiter = SharedResource(
        reserved_capacity=settings.reserved_capacity,
        shared_capacity=settings.shared_capacity,
        lease_manager=lease_manager,
        factor=settings.factor,
    )
    return rate_limiter, lease_manager


class InvalidRequestError(ValueError):
    """The request body is not a valid ingest request."""


@dataclass(frozen=True)
class Record:
    """One record of a request: its id as text, its cost and its JSON."""

    id: str
    cost: int
    body: str


def parse_records(body: bytes, max_records: int, max_cost: int) -> list[Record]:
    """Parse and check an ingest request body.

    Each record needs an ``id`` (string or integer, unique in the request)
    and a ``cost`` (integer from 1 to ``max_cost``); other fields are kept
    as they are.

    Raises:
        InvalidRequestError: with a message that names the invalid part.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidRequestError(f"request body is not valid JSON: {err}") from None
    if not isinstance(document, dict):
        raise InvalidRequestError('request body must be a JSON object with "records"')
    items = document.get("records")
    if not isinstance(items, list) or not items:
        raise InvalidRequestError('"records" must be a non-empty list of objects')
    if len(items) > max_records:
        raise InvalidRequestError(
            f'"records" has {len(items)} items; the maximum is {max_records}'
        )

    records = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"records[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(f"{where} must be an object, got {item!r}")
        record_id = item.get("id")
        if isinstance(record_id, bool) or not isinstance(record_id, str | int):
            raise InvalidRequestError(
                f"{where}.id must be a string or an integer, got {record_id!r}"
            )
        cost = item.get("cost")
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise InvalidRequestError(
                f"{where}.cost must be a positive integer, got {cost!r}"
            )
        if cost > max_cost:
            raise InvalidRequestError(
                f"{where}.cost is {cost}, above the maximum capacity of {max_cost} "
                "per second, so it could never be written"
            )
        key = str(record_id)
        if key in seen:
            raise InvalidRequestError(f"{where}.id {record_id!r} appears twice")
        seen.add(key)
        records.append(Record(key, cost, json.dumps(item, separators=(",", ":"))))
    return records


class SQLiteStore:
    """The example's datastore: a SQLite file that several processes share.

    Each batch is one transaction that adds a row to ``batches`` (process id,
    hand-over time, cost, size) and one row per record to ``records``.
    ``records.record_id`` is not unique, so a record written twice shows up
    twice instead of being hidden.
    """

    # Seconds a writer waits for another process's transaction to finish.
    _BUSY_TIMEOUT = 30.0

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as connection:
            # WAL lets readers run while one process writes.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(
                """
                CREATE TABLE IF NOT EXISTS batches (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    pid INTEGER NOT NULL,
                    handed_at REAL NOT NULL,
                    cost INTEGER NOT NULL,
                    size INTEGER NOT NULL
                );
                CREATE TABLE IF NOT EXISTS records (
                    record_id TEXT NOT NULL,
                    batch_id INTEGER NOT NULL REFERENCES batches (id),
                    cost INTEGER NOT NULL,
                    body TEXT NOT NULL
                );
                """
            )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: callbacks run on several worker threads and
        # sqlite3 connections must not be shared between threads.
        connection = sqlite3.connect(self.path, timeout=self._BUSY_TIMEOUT)
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    def write_batch(self, records: list[Record], handed_at: float) -> None:
        """Write one batch in one transaction.

        ``handed_at`` is the wall-clock time (``time.time()``) at which the
        Batcher handed the batch over. It is wall-clock time because the
        monotonic clocks of different processes need not share an origin.
        """
        with self._connect() as connection:
            cursor = connection.execute(
                "INSERT INTO batches (pid, handed_at, cost, size) VALUES (?, ?, ?, ?)",
                (
                    os.getpid(),
                    handed_at,
                    sum(r.cost for r in records),
                    len(records),
                ),
            )
            batch_id = cursor.lastrowid
            connection.executemany(
                "INSERT INTO records (record_id, batch_id, cost, body) "
                "VALUES (?, ?, ?, ?)",
                [(r.id, batch_id, r.cost, r.body) for r in records],
            )


@dataclass(frozen=True)
class IngestResponse:
    """HTTP response for the web framework to send: status, JSON body and
    extra headers."""

    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


class _PendingRequest:
    """One request's progress, updated by the callbacks of its batches.

    A request is accepted once all its operations were put, or cancelled
    when a put() failed or the wait timed out. Callbacks hold its batches
    until that decision and drop the records of a cancelled request, so a
    rejected request writes nothing and the client can retry it.
    """

    def __init__(self, total: int, store: SQLiteStore) -> None:
        self.total = total
        self._store = store
        self.decided = threading.Event()
        self.done = threading.Event()
        # Guards cancelled and the counters below.
        self._lock = threading.Lock()
        self.cancelled = False
        self.stored = 0
        self.batches = 0
        self.dropped = 0
        self.failed = 0

    def accept(self) -> None:
        self.decided.set()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
        self.decided.set()

    def handle_batch(self, operations: list[Operation]) -> None:
        """Write one batch of this request; runs on a Batcher worker thread."""
        handed_at = time.time()
        if not self.decided.wait(_DECISION_WAIT_SECONDS):
            logger.warning(
                "request was neither accepted nor cancelled after %.0f s; "
                "dropping a batch of %d records",
                _DECISION_WAIT_SECONDS,
                len(operations),
            )
            self.cancel()
        with self._lock:
            cancelled = self.cancelled

        stored = failed = dropped = 0
        if cancelled:
            dropped = len(operations)
        else:
            records = [op.payload for op in operations]
            try:
                self._store.write_batch(records, handed_at)
                stored = len(records)
            except sqlite3.Error:
                logger.exception("writing a batch of %d records failed", len(records))
                failed = len(records)

        with self._lock:
            self.stored += stored
            self.failed += failed
            self.dropped += dropped
            if stored:
                self.batches += 1
            finished = self.stored + self.failed + self.dropped >= self.total
        if finished:
            self.done.set()


class IngestService:
    """One process's Batcher and datastore, behind ``ingest(body)``.

    Thread-safe: the web server calls ``ingest`` from its request threads.
    ``start`` registers ``stop`` with ``atexit``, so the Batcher drains its
    buffer and releases its leases when the process exits normally.
    """

    def __init__(
        self,
        batcher: Batcher,
        store: SQLiteStore,
        *,
        request_timeout: float = 30.0,
        max_batch_size: int = 100,
        max_records: int = 10_000,
        lease_manager: LeaseManager | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.batcher = batcher
        self.store = store
        self._lease_manager = lease_manager
        self._request_timeout = request_timeout
        self._max_batch_size = max_batch_size
        self._max_records = max_records
        self._clock = clock
        # Guards _state, so start() and stop() run once each per process.
        self._state_lock = threading.Lock()
        self._state = "new"

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> IngestService:
        """Build the service, its Batcher and its rate limiter; start nothing."""
        rate_limiter, lease_manager = build_rate_limiter(settings)
        batcher = Batcher(
            rate_limiter,
            buffer_size=settings.buffer_size,
            error_on_full_buffer=True,
        )
        return cls(
            batcher,
            SQLiteStore(settings.database),
            request_timeout=settings.request_timeout,
            max_batch_size=settings.max_batch_size,
            max_records=settings.max_records,
            lease_manager=lease_manager,
        )

    @property
    def state(self) -> str:
        """``new``, ``started`` or ``stopped``."""
        return self._state

    def start(self) -> None:
        """Start the Batcher (and its rate limiter) unless already started.

        Call it in the process that serves requests: threads and leases do
        not survive a fork.
        """
        with self._state_lock:
            if self._state != "new":
                return
            self._state = "started"
        self.batcher.start()
        atexit.register(self.stop)
        logger.info("ingest service started in process %d", os.getpid())

    def stop(self, timeout: float = 10.0) -> None:
        """Drain the buffer within capacity and stop the Batcher; idempotent."""
        with self._state_lock:
            if self._state == "stopped":
                return
            self._state = "stopped"
        atexit.unregister(self.stop)
        # The Batcher stops its rate limiter, which releases the leases
        # before the lease manager closes.
        unprocessed = self.batcher.stop(timeout)
        if self._lease_manager is not None:
            self._lease_manager.close()
        if unprocessed:
            logger.warning(
                "ingest service stopped with %d operations unwritten", len(unprocessed)
            )
        logger.info("ingest service stopped in process %d", os.getpid())

    def ingest(self, body: bytes) -> IngestResponse:
        """Write the records of one request and return the HTTP response.

        Status 200 with counts once every record is written, 400 for an
        invalid body and 503 when the buffer is full or the service is
        stopping. Status 504 means the records were not all written within
        the request timeout, and 500 that the datastore failed.
        """
        started = self._clock()
        rate_limiter = self.batcher.rate_limiter
        max_cost = rate_limiter.max_capacity if rate_limiter is not None else 2**63
        try:
            records = parse_records(body, self._max_records, max_cost)
        except InvalidRequestError as err:
            logger.info("rejected an invalid ingest request: %s", err)
            return IngestResponse(400, {"error": str(err)})
        if self._state == "stopped":
            return self._unavailable("the service is stopping")

        pending = _PendingRequest(len(records), self.store)
        watcher = Watcher(pending.handle_batch, max_batch_size=self._max_batch_size)
        try:
            for record in records:
                self.batcher.put(
                    Operation(watcher, record.cost, record, batchable=True)
                )
        except BufferFullError:
            # Operations already put stay in the buffer until a flush hands
            # them to handle_batch, which drops them; their cost is spent.
            pending.cancel()
            logger.warning(
                "rejected a request of %d records: buffer full", len(records)
            )
            return self._unavailable("the buffer is full; retry later")
        except BatcherStoppedError:
            pending.cancel()
            logger.warning("rejected a request of %d records: stopping", len(records))
            return self._unavailable("the service is stopping")
        pending.accept()

        if not pending.done.wait(self._request_timeout):
            pending.cancel()
            # NOTE: a batch whose write had begun before the cancel still
            # commits, so stored_records may be below what ends up stored.
            logger.warning(
                "request of %d records timed out after %.1f s with %d stored",
                len(records),
                self._request_timeout,
                pending.stored,
            )
            return IngestResponse(
                504,
                {
                    "error": (
                        f"timed out after {self._request_timeout:g} s waiting for "
                        "the records to be written; the rest were dropped"
                    ),
                    "records": len(records),
                    "stored_records": pending.stored,
                },
            )
        if pending.failed:
            return IngestResponse(
                500,
                {
                    "error": "the datastore failed to write some records",
                    "records": len(records),
                    "failed_records": pending.failed,
                },
            )
        return IngestResponse(
            200,
            {
                "records": pending.stored,
                "batches": pending.batches,
                "elapsed_seconds": round(self._clock() - started, 3),
            },
        )

    @staticmethod
    def _unavailable(message: str) -> IngestResponse:
        return IngestResponse(
            503, {"error": message}, {"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
