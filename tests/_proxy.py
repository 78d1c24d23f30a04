"""A loopback TCP proxy that delays or drops responses, for storage-fault tests.

Each client connection gets its own upstream connection and three threads.
One forwards requests, one reads responses and stamps them with the time
they arrived, and one sends them on once the delay in force has passed.
A response split into several chunks is therefore delayed once, not once
per chunk.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

__all__ = ["DelayProxy"]

_HOST = "127.0.0.1"
_CHUNK = 65536

# Decides the delay of a response from the request that preceded it on the
# same connection: returns seconds to hold it back, or None to drop it.
DelayRule = Callable[[bytes], float | None]


class DelayProxy:
    """Forward 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``.

    ``delay`` seconds are added to every response, unless ``rule`` is set,
    in which case ``rule(request_head)`` returns the delay of the response
    to that request. ``blackhole`` drops every response while it is True.
    Requests are never delayed. ``delayed`` and ``dropped`` count the
    response chunks held back and thrown away.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((_HOST, 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        # Guards the settings and counters below and _sockets.
        self._lock = threading.Lock()
        self.delay = 0.0
        self.blackhole = False
        self.rule: DelayRule | None = None
        self.delayed = 0
        self.dropped = 0
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(
            target=self._accept, name="test-proxy-accept", daemon=True
        )
        self._accepter.start()

    def set(
        self,
        delay: float = 0.0,
        *,
        blackhole: bool = False,
        rule: DelayRule | None = None,
    ) -> None:
        """Replace the delay, the blackhole mode and the rule at once."""
        with self._lock:
            self.delay = delay
            self.blackhole = blackhole
            self.rule = rule

    def close(self) -> None:
        """Stop accepting, close every connection and join the threads."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._accepter.join(5)
        for thread in list(self._threads):
            thread.join(5)

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(
                    (_HOST, self._upstream_port), timeout=5
                )
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            self._serve(client, upstream)

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        # The head of the last request sent on this connection. HTTP/1.1
        # clients wait for each response before the next request, so the
        # response being read belongs to it.
        last_request = [b""]
        outgoing: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()

        def forward_requests() -> None:
            while True:
                try:
                    data = client.recv(_CHUNK)
                except OSError:
                    data = b""
                if not data:
                    _close_pair(client, upstream)
                    return
                last_request[0] = data[:4096]
                try:
                    upstream.sendall(data)
                except OSError:
                    _close_pair(client, upstream)
                    return

        def read_responses() -> None:
            while True:
                try:
                    data = upstream.recv(_CHUNK)
                except OSError:
                    data = b""
                if not data:
                    outgoing.put(None)
                    return
                delay = self._delay_for(last_request[0])
                if delay is None:
                    continue
                outgoing.put((time.monotonic() + delay, data))

        def send_responses() -> None:
            while True:
                item = outgoing.get()
                if item is None:
                    _close_pair(client, upstream)
                    return
                due, data = item
                wait = due - time.monotonic()
                if wait > 0 and self._closed.wait(wait):
                    return
                try:
                    client.sendall(data)
                except OSError:
                    _close_pair(client, upstream)
                    return

        for target, role in (
            (forward_requests, "requests"),
            (read_responses, "read"),
            (send_responses, "send"),
        ):
            thread = threading.Thread(
                target=target, name=f"test-proxy-{role}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _delay_for(self, request_head: bytes) -> float | None:
        with self._lock:
            if self.blackhole:
                self.dropped += 1
                return None
            delay = self.delay if self.rule is None else self.rule(request_head)
            if delay is None:
                self.dropped += 1
            elif delay > 0:
                self.delayed += 1
            return delay


def _close_pair(first: socket.socket, second: socket.socket) -> None:
    for sock in (first, second):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
