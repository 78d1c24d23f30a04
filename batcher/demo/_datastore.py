"""The demo's datastore: one SQLite database file that every instance writes to.

Tables:

* ``run``: one row with the settings and the start time of the run.
* ``input``: every record to write, with the instance it is assigned to.
* ``writes``: one row per record written, by the watcher's callback, with
  three times for its batch: ``raised_at`` when the Batcher raised it,
  ``handed_at`` when the callback started and ``committed_at`` just before
  its transaction committed.
* ``capacity``: each change of an instance's capacity, with its time.
* ``instances``: each instance's storage request count when it stopped.

Times are ``time.monotonic()`` seconds, which all processes on one machine
share, so rows from different instances compare directly.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ._input import Record

__all__ = [
    "RunSettings",
    "Writer",
    "connect",
    "create_database",
    "load_input",
    "mark_time",
]

#: Seconds a connection waits for another process's write lock.
BUSY_TIMEOUT: Final = 30.0

_SCHEMA: Final = """
CREATE TABLE run (
    instances INTEGER NOT NULL,
    reserved_capacity INTEGER NOT NULL,
    shared_capacity INTEGER NOT NULL,
    factor INTEGER NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE TABLE input (
    record_id INTEGER PRIMARY KEY,
    instance INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE writes (
    record_id INTEGER NOT NULL,
    instance INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    data TEXT NOT NULL,
    raised_at REAL NOT NULL,
    handed_at REAL NOT NULL,
    committed_at REAL
);
CREATE TABLE capacity (
    instance INTEGER NOT NULL,
    at REAL NOT NULL,
    capacity INTEGER NOT NULL
);
CREATE TABLE instances (
    instance INTEGER PRIMARY KEY,
    storage_requests INTEGER NOT NULL,
    stopped_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class RunSettings:
    """The capacity settings of a run, as the ``run`` table stores them."""

    instances: int
    reserved_capacity: int
    shared_capacity: int
    factor: int

    @property
    def limit(self) -> int:
        """Capacity per second that all instances together may hold."""
        return self.reserved_capacity * self.instances + self.shared_capacity


def connect(path: Path) -> sqlite3.Connection:
    """Open the database in WAL mode, waiting up to BUSY_TIMEOUT for locks.

    The connection may be used from any thread, one thread at a time.
    """
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode=WAL")
    # In WAL mode, NORMAL keeps the database consistent after a crash. Only
    # an OS crash can lose the last commits, which a demo run can afford.
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def create_database(
    path: Path, settings: RunSettings, records: Sequence[Record]
) -> None:
    """Create the database with the settings and the input records.

    Records are dealt to instances 1..N in turn. Raises FileExistsError if
    ``path`` exists, so an earlier run's database is never mixed in.
    """
    # Exclusive creation: fails if the file appeared since the caller checked.
    path.open("xb").close()
    connection = connect(path)
    try:
        connection.executescript(_SCHEMA)
        with _transaction(connection):
            connection.execute(
                "INSERT INTO run (instances, reserved_capacity, shared_capacity, "
                "factor) VALUES (?, ?, ?, ?)",
                (
                    settings.instances,
                    settings.reserved_capacity,
                    settings.shared_capacity,
                    settings.factor,
                ),
            )
            connection.executemany(
                "INSERT INTO input (record_id, instance, cost, data) "
                "VALUES (?, ?, ?, ?)",
                (
                    (r.record_id, position % settings.instances + 1, r.cost, r.data)
                    for position, r in enumerate(records)
                ),
            )
    finally:
        connection.close()


def mark_time(path: Path, column: str, at: float) -> None:
    """Set ``run.started_at`` or ``run.finished_at``."""
    if column not in ("started_at", "finished_at"):
        raise ValueError(f"no such time column in table run: {column!r}")
    connection = connect(path)
    try:
        connection.execute(f"UPDATE run SET {column} = ?", (at,))
    finally:
        connection.close()


def load_input(path: Path, instance: int) -> list[Record]:
    """Return the records assigned to ``instance``, in id order."""
    connection = connect(path)
    try:
        rows = connection.execute(
            "SELECT record_id, cost, data FROM input WHERE instance = ? "
            "ORDER BY record_id",
            (instance,),
        ).fetchall()
    finally:
        connection.close()
    return [Record(record_id, cost, data) for record_id, cost, data in rows]


class Writer:
    """Writes batches of records for one instance, one transaction per batch.

    Thread-safe: each thread gets its own connection, because the Batcher
    runs callbacks on several worker threads at once.
    """

    def __init__(
        self, path: Path, instance: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = path
        self._instance = instance
        self._clock = clock
        self._local = threading.local()
        # Guards _connections, the list that close() empties.
        self._connections_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def write(
        self, records: Iterable[Record], raised_at: float, handed_at: float
    ) -> None:
        """Insert ``records`` in one transaction.

        ``raised_at`` is the time the Batcher raised the batch and
        ``handed_at`` the time its callback started. Each row's
        ``committed_at`` is read after the inserts, just before COMMIT.
        """
        with _transaction(self._connection()) as connection:
            # The transaction holds the write lock, so the rows inserted
            # below are the only ones above the current maximum rowid.
            (last_rowid,) = connection.execute(
                "SELECT COALESCE(MAX(rowid), 0) FROM writes"
            ).fetchone()
            connection.executemany(
                "INSERT INTO writes "
                "(record_id, instance, cost, data, raised_at, handed_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (r.record_id, self._instance, r.cost, r.data, raised_at, handed_at)
                    for r in records
                ),
            )
            connection.execute(
                "UPDATE writes SET committed_at = ? WHERE rowid > ?",
                (self._clock(), last_rowid),
            )

    def record_capacity(self, changes: Iterable[tuple[float, int]]) -> None:
        """Insert (time, capacity) rows for this instance."""
        with _transaction(self._connection()) as connection:
            connection.executemany(
                "INSERT INTO capacity (instance, at, capacity) VALUES (?, ?, ?)",
                ((self._instance, at, capacity) for at, capacity in changes),
            )

    def record_stop(self, storage_requests: int) -> None:
        """Store the instance's storage request count and its stop time."""
        with _transaction(self._connection()) as connection:
            connection.execute(
                "INSERT OR REPLACE INTO instances (instance, storage_requests, "
                "stopped_at) VALUES (?, ?, ?)",
                (self._instance, storage_requests, self._clock()),
            )

    def close(self) -> None:
        """Close every thread's connection; call once all writes are done."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self._path)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one write transaction: commit at its end, roll back on error.

    BEGIN IMMEDIATE takes the write lock at once, so the busy timeout covers
    the wait for other writers instead of an upgrade failing mid-transaction.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
