"""The pool of threads that run watcher callbacks."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["WorkerPool"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Time given to idle threads to exit at shutdown.
_MIN_JOIN_SECONDS = 0.5

# Posted once per worker to make it exit; never a real work item.
_SENTINEL = object()


class WorkerPool(Generic[T]):
    """Threads that run ``work(item)`` for each submitted item.

    Threads start on demand up to ``max_workers``. A worker whose item runs
    past its deadline is written off with ``write_off()``, which lets one
    more thread start, so a hung callback holds only its own thread and
    never stalls the rest of the pool.
    """

    def __init__(self, work: Callable[[T], None], max_workers: int, name: str) -> None:
        self._work = work
        self._max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Guards _threads, _idle, _written_off, _started and _closed.
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._written_off = 0
        self._closed = False
        self._started = 0

    def submit(self, item: T) -> None:
        """Queue ``item`` and start a thread if no idle one will take it."""
        self._queue.put(item)
        self._add_thread_if_needed()

    def write_off(self) -> None:
        """Let one more thread start in place of one stuck past its deadline."""
        with self._lock:
            self._written_off += 1
        self._add_thread_if_needed()

    def restore(self) -> None:
        """Undo one ``write_off()`` when the stuck item finally returns."""
        with self._lock:
            self._written_off -= 1

    def _add_thread_if_needed(self) -> None:
        with self._lock:
            if self._closed:
                return
            # qsize() counts items no thread has taken yet; each idle
            # thread is blocked in get() and takes one of them.
            if self._queue.qsize() <= self._idle:
                return
            if len(self._threads) >= self._max_workers + self._written_off:
                return
            self._started += 1
            thread = threading.Thread(
                target=self._run,
                name=f"{self._name}-{self._started}",
                daemon=True,
            )
            self._threads.append(thread)
        thread.start()

    def is_worker(self, thread: threading.Thread) -> bool:
        """Return whether ``thread`` is one of this pool's threads."""
        with self._lock:
            return thread in self._threads

    def shutdown(self, timeout: float) -> list[threading.Thread]:
        """Stop every thread and join them; return those still alive.

        Items already queued run before the threads exit. The calling
        thread is never joined, so a callback may shut the pool down.
        """
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_SENTINEL)
        current = threading.current_thread()
        # Idle threads exit at once, so they get a short grace period even
        # when the caller's time is used up.
        deadline = time.monotonic() + max(timeout, _MIN_JOIN_SECONDS)
        alive = []
        for thread in threads:
            if thread is current:
                continue
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                alive.append(thread)
        return alive

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
            if item is _SENTINEL:
                break
            try:
                self._work(item)  # type: ignore[arg-type]
            except BaseException:
                # work() reports callback errors itself, so this is a bug;
                # the thread goes on so the pool keeps its size.
                logger.exception("worker %s failed", threading.current_thread().name)
