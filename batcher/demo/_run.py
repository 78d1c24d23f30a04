"""Run the demo: storage, datastore, instance processes, progress and summary."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final, TextIO

from .._azurite import Azurite
from ._datastore import RunSettings, create_database, mark_time
from ._input import Record
from ._instance import InstanceConfig, Status, run_instance
from ._progress import Progress
from ._summary import read_summary

__all__ = ["DemoSettings", "InstanceFailedError", "run_demo"]

logger = logging.getLogger(__name__)

#: Seconds the instances may take to start and provision the partitions.
READY_TIMEOUT: Final = 120.0
#: Seconds the instances may take to stop after being asked to.
STOP_TIMEOUT: Final = 20.0
#: Seconds the instances may run after the last expected finish, as a guard
#: against a run that never ends.
RUN_GRACE: Final = 120.0


@dataclass(frozen=True)
class DemoSettings:
    """Settings for one run, checked by the command line parser."""

    instances: int
    reserved_capacity: int
    shared_capacity: int
    factor: int
    connection_string: str | None
    container: str
    container_generated: bool
    database: Path | None
    plot: Path | None
    quiet: bool
    log_level: int

    def __repr__(self) -> str:
        # The connection string is left out: it carries the account key.
        return f"DemoSettings(instances={self.instances}, container={self.container!r})"


class InstanceFailedError(RuntimeError):
    """An instance process failed or stopped without finishing."""


def run_demo(
    settings: DemoSettings,
    records: Sequence[Record],
    out: TextIO = sys.stdout,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run the demo and return the exit status: 0 if the summary checks pass.

    Raises:
        InstanceFailedError: an instance could not run; the others were stopped.
        KeyboardInterrupt: Ctrl-C; the instances were stopped and storage
            that the demo started was stopped.
    """
    run_settings = RunSettings(
        settings.instances,
        settings.reserved_capacity,
        settings.shared_capacity,
        settings.factor,
    )
    total_cost = sum(record.cost for record in records)
    partitions = -(-settings.shared_capacity // settings.factor)
    _say(
        out,
        f"batcher demo: {settings.instances} instances share {run_settings.limit} "
        f"cost/s ({settings.reserved_capacity} reserved each + "
        f"{settings.shared_capacity} shared in {partitions} partitions of "
        f"{settings.factor}) to write {len(records)} records costing {total_cost} "
        f"in all, {total_cost / run_settings.limit:.1f} s at the limit.",
    )
    with contextlib.ExitStack() as cleanup:
        database = _database_path(settings, cleanup)
        create_database(database, run_settings, records)
        kept = "kept" if settings.database is not None else "removed at the end"
        _say(out, f"Datastore: SQLite database {database} ({kept}).")

        connection_string = _storage(settings, cleanup, out)
        _say(out, f"Leases: blobs in container {settings.container!r}.")
        runner = _InstanceRunner(settings, connection_string, database, out, clock)
        cleanup.callback(runner.stop)
        runner.start()
        started_at = runner.wait_until_ready()
        mark_time(database, "started_at", started_at)
        finished_at = runner.monitor(run_settings.limit, total_cost)
        mark_time(database, "finished_at", finished_at)
        runner.stop()

        summary = read_summary(database)
        _say(out, "")
        _say(out, f"Summary, computed from the rows in {database}:")
        for line in summary.lines():
            _say(out, "  " + line)
        if settings.plot is not None:
            from ._plot import plot_run

            plot_run(database, settings.plot)
            _say(out, f"Plot: {settings.plot}")
        return 0 if summary.ok else 1


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _database_path(settings: DemoSettings, cleanup: contextlib.ExitStack) -> Path:
    if settings.database is not None:
        return settings.database
    folder = Path(tempfile.mkdtemp(prefix="batcher-demo-"))
    cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
    return folder / "datastore.sqlite3"


def _storage(settings: DemoSettings, cleanup: contextlib.ExitStack, out: TextIO) -> str:
    """Return the connection string to use, starting Azurite if none was given."""
    if settings.connection_string is not None:
        _say(out, "Storage: the account that the connection string names.")
        if settings.container_generated:
            cleanup.callback(
                _delete_container, settings.connection_string, settings.container
            )
        return settings.connection_string
    azurite = Azurite()
    cleanup.callback(azurite.close)
    azurite.start()
    _say(
        out,
        f"Storage: Azurite, the storage emulator, started on 127.0.0.1:{azurite.port}.",
    )
    return azurite.connection_string


def _delete_container(connection_string: str, container: str) -> None:
    """Delete the container that this run created, logging an AzureError."""
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContainerClient

    try:
        with ContainerClient.from_connection_string(
            connection_string, container
        ) as client:
            client.delete_container()
    except AzureError as error:
        logger.warning(
            "could not delete container %s: %s; delete it by hand",
            container,
            type(error).__name__,
        )


class _InstanceRunner:
    """Starts the instance processes, relays their reports and stops them."""

    def __init__(
        self,
        settings: DemoSettings,
        connection_string: str,
        database: Path,
        out: TextIO,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._connection_string = connection_string
        self._database = database
        self._out = out
        self._clock = clock
        # spawn, not fork: a forked child would inherit the parent's threads'
        # locks in whatever state they were in.
        self._context = multiprocessing.get_context("spawn")
        self._messages: Any = self._context.Queue()
        self._start_event = self._context.Event()
        self._stop_event = self._context.Event()
        self._processes: dict[int, BaseProcess] = {}
        self._done: set[int] = set()
        self._progress = Progress(settings.instances, 0)
        self._stopped = False

    def start(self) -> None:
        """Start every instance process.

        SIGINT stays blocked while they start, and the children inherit the
        blocked mask, so Ctrl-C cannot interrupt one before it ignores SIGINT.
        """
        settings = self._settings
        with _sigint_blocked():
            for index in range(1, settings.instances + 1):
                config = InstanceConfig(
                    index=index,
                    connection_string=self._connection_string,
                    container=settings.container,
                    database=self._database,
                    reserved_capacity=settings.reserved_capacity,
                    shared_capacity=settings.shared_capacity,
                    factor=settings.factor,
                    log_level=settings.log_level,
                    parent_pid=os.getpid(),
                )
                process = self._context.Process(
                    target=run_instance,
                    args=(config, self._messages, self._start_event, self._stop_event),
                    name=f"batcher-demo-instance-{index}",
                )
                process.start()
                self._processes[index] = process

    def wait_until_ready(self) -> float:
        """Wait until every instance is ready, start them all, return the time."""
        ready: set[int] = set()
        deadline = self._clock() + READY_TIMEOUT
        while len(ready) < len(self._processes):
            message = self._next_message(deadline)
            if message is None:
                raise InstanceFailedError(
                    f"instances {sorted(set(self._processes) - ready)} were not ready "
                    f"within {READY_TIMEOUT:.0f} s"
                )
            kind, index, _ = message
            if kind == "ready":
                ready.add(index)
        started_at = self._clock()
        self._start_event.set()
        return started_at

    def monitor(self, limit: int, total_cost: int) -> float:
        """Print progress until every instance is done; return when they were."""
        self._progress = Progress(len(self._processes), limit)
        if not self._settings.quiet:
            for line in self._progress.header():
                _say(self._out, line)
        started_at = self._clock()
        give_up_at = started_at + total_cost / max(limit, 1) + RUN_GRACE
        next_line = started_at + 1.0
        finished_at = started_at
        while len(self._done) < len(self._processes):
            now = self._clock()
            if now >= give_up_at:
                raise InstanceFailedError(
                    f"the run did not finish within {give_up_at - started_at:.0f} s"
                )
            if now >= next_line:
                if not self._settings.quiet:
                    _say(self._out, self._progress.line(now, started_at))
                next_line += 1.0
                continue
            message = self._next_message(min(next_line, give_up_at))
            if message is not None and message[0] == "done":
                finished_at = self._clock()
        return finished_at

    def stop(self) -> None:
        """Ask every instance to stop, wait for them, kill any that hang."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_event.set()
        deadline = self._clock() + STOP_TIMEOUT
        for process in self._processes.values():
            while process.is_alive() and self._clock() < deadline:
                # Reading keeps the queue's pipe from filling up, which
                # would block a child's exit.
                self._drain_messages()
                process.join(0.1)
        for index, process in self._processes.items():
            if process.is_alive():
                logger.warning(
                    "instance %d did not stop within %.0f s; killing it",
                    index,
                    STOP_TIMEOUT,
                )
                process.kill()
                process.join(5.0)
        self._drain_messages()
        self._messages.close()
        self._messages.join_thread()

    def _next_message(self, deadline: float) -> tuple[str, int, object] | None:
        """Return the next report before ``deadline``, or None if none came.

        Raises:
            InstanceFailedError: an instance reported a failure or exited
                without reporting that it was done.
        """
        while True:
            timeout = deadline - self._clock()
            if timeout <= 0:
                return None
            try:
                message = self._messages.get(timeout=min(timeout, 0.5))
            except queue.Empty:
                self._check_alive()
                continue
            self._handle(message)
            result: tuple[str, int, object] = message
            return result

    def _drain_messages(self, *, raise_failures: bool = False) -> None:
        while True:
            try:
                message = self._messages.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            try:
                self._handle(message)
            except InstanceFailedError:
                if raise_failures:
                    raise

    def _handle(self, message: tuple[str, int, object]) -> None:
        kind, index, body = message
        if kind == "failed":
            raise InstanceFailedError(f"instance {index} failed: {body}")
        if kind in ("status", "done") and isinstance(body, Status):
            self._progress.update(index, body, done=kind == "done")
        if kind == "done":
            self._done.add(index)

    def _check_alive(self) -> None:
        for index, process in self._processes.items():
            if index not in self._done and process.exitcode is not None:
                # A "done" or "failed" report may still be in the pipe.
                self._drain_messages(raise_failures=True)
                if index not in self._done:
                    raise InstanceFailedError(
                        f"instance {index} exited with status {process.exitcode} "
                        "before it was done; see the log lines above"
                    )


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
