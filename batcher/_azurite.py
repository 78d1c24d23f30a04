"""Start and stop Azurite, the Azure Storage emulator, for tests, the demo and
benchmarks.

Azurite comes from npm (``scripts/setup`` installs it into ``node_modules``).
This module is not part of the public API.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Final

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "Azurite",
    "AzuriteStartError",
    "find_azurite_binary",
]

#: The development storage account that Azurite serves by default.
ACCOUNT_NAME: Final = "devstoreaccount1"
#: The well-known key of the development account, published in Azurite's
#: README. It is public and grants access to local emulators only.
ACCOUNT_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)

#: Environment variable that overrides where the ``azurite-blob`` program is.
BINARY_ENV_VAR: Final = "BATCHER_AZURITE_BIN"

_HOST: Final = "127.0.0.1"
# Options passed on every start. Without --disableTelemetry Azurite sends usage
# data to an outside service; --silent drops the per-request access log.
_FIXED_OPTIONS: Final = ("--disableTelemetry", "--silent", "--skipApiVersionCheck")
_PORT_ATTEMPTS: Final = 5
_STDERR_TAIL_BYTES: Final = 2000

# Launchers whose process may still run; the exit hook kills them.
_running: set[Azurite] = set()
_running_lock = threading.Lock()


class AzuriteStartError(RuntimeError):
    """Azurite exited or did not open its port in time."""

    def __init__(self, message: str, *, port_in_use: bool = False) -> None:
        super().__init__(message)
        #: Whether Azurite reported that another program is bound to the port.
        self.port_in_use = port_in_use


def find_azurite_binary() -> Path:
    """Return the ``azurite-blob`` program to run.

    Looks at ``$BATCHER_AZURITE_BIN``, then ``node_modules/.bin`` in the
    repository root, then ``PATH``.

    Raises:
        FileNotFoundError: none of them has the program.
    """
    configured = os.environ.get(BINARY_ENV_VAR)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise FileNotFoundError(
                f"{BINARY_ENV_VAR}={configured!r} is not a file; point it at "
                "azurite-blob or unset it and run scripts/setup"
            )
        return path
    repo_root = Path(__file__).resolve().parent.parent
    local = repo_root / "node_modules" / ".bin" / "azurite-blob"
    if local.is_file():
        return local
    found = shutil.which("azurite-blob")
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"azurite-blob not found in ${BINARY_ENV_VAR}, {local} or PATH; run "
        "scripts/setup to install Azurite from npm (needs Node.js)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Azurite:
    """One ``azurite-blob`` process on 127.0.0.1, serving the development account.

    ``start()`` picks a free port and a temporary data folder unless given.
    After ``stop()`` or ``kill()``, ``start()`` runs Azurite again on the same
    port and data folder, so blobs and leases survive, which simulates storage
    that went away and came back. ``close()`` (or leaving the ``with`` block)
    stops the process and removes the data folder if this object created it.
    An exit hook kills any process still running when the interpreter exits.
    Not thread-safe: use one launcher from one thread.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fixed_port = port is not None
        self._port = port
        self._owns_data_dir = data_dir is None
        self._data_dir = None if data_dir is None else Path(data_dir)
        self._binary = None if binary is None else Path(binary)
        self._start_timeout = start_timeout
        self._clock = clock
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # Connection details.

    @property
    def port(self) -> int:
        """TCP port Azurite listens on; set by the first ``start()``."""
        if self._port is None:
            raise RuntimeError("Azurite has no port before the first start()")
        return self._port

    @property
    def data_dir(self) -> Path:
        """Folder that contains Azurite's blobs and metadata; set by ``start()``."""
        if self._data_dir is None:
            raise RuntimeError("Azurite has no data folder before the first start()")
        return self._data_dir

    @property
    def account_name(self) -> str:
        """Name of the development storage account."""
        return ACCOUNT_NAME

    @property
    def account_key(self) -> str:
        """Key of the development storage account."""
        return ACCOUNT_KEY

    @property
    def account_url(self) -> str:
        """Blob endpoint, such as ``http://127.0.0.1:PORT/devstoreaccount1``."""
        return f"http://{_HOST}:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """Connection string for the development account on this instance."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.account_url};"
        )

    @property
    def running(self) -> bool:
        """Whether the Azurite process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    # Lifecycle.

    def start(self) -> Azurite:
        """Start Azurite and wait until it accepts connections; return self.

        Raises:
            FileNotFoundError: the program is not installed.
            AzuriteStartError: Azurite exited or did not open its port within
                ``start_timeout`` seconds; the message ends with its stderr.
        """
        if self.running:
            raise RuntimeError(f"Azurite is already running on port {self._port}")
        self._reap()
        binary = self._binary if self._binary is not None else find_azurite_binary()
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="batcher-azurite-"))
        # A port picked here can be taken by another program before Azurite
        # binds it, so a clash on a picked port is retried with a new one.
        may_pick_port = self._port is None
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if self._port is None:
                self._port = _free_port()
            try:
                self._launch(binary)
                return self
            except AzuriteStartError as error:
                if (
                    not (may_pick_port and error.port_in_use)
                    or attempt == _PORT_ATTEMPTS
                ):
                    raise
                self._port = None
        raise AssertionError("unreachable")

    def stop(self, grace: float = 5.0) -> None:
        """Terminate Azurite, killing it after ``grace`` seconds; idempotent."""
        process = self._process
        if process is not None and process.poll() is None:
            self._signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
        self._reap()

    def kill(self) -> None:
        """Kill Azurite at once with SIGKILL, as if the storage went away.

        Azurite 3.37 saves its blob metadata (containers, blobs, leases) to the
        data folder every 5 seconds. Changes from the last 5 seconds before
        ``kill()`` are therefore lost on restart, while ``stop()`` saves them.
        """
        process = self._process
        if process is not None and process.poll() is None:
            self._signal_group(process, signal.SIGKILL)
        self._reap()

    def close(self) -> None:
        """Stop Azurite and remove the data folder if this object created it."""
        self.stop()
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> Azurite:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Azurite(port={self._port}, data_dir={str(self._data_dir)!r}, {state})"

    # Internals.

    def _launch(self, binary: Path) -> None:
        port = self.port
        command = [
            str(binary),
            "--blobHost",
            _HOST,
            "--blobPort",
            str(port),
            "--location",
            str(self.data_dir),
            *_FIXED_OPTIONS,
        ]

        env = dict(os.environ)
        # A custom account list would replace the development account.
        env.pop("AZURITE_ACCOUNTS", None)

        # The file stays open while Azurite runs; _reap() closes it.
        self._stderr = tempfile.TemporaryFile(prefix="batcher-azurite-stderr-")  # noqa: SIM115
        # A new session puts Azurite in its own process group, so a signal
        # reaches every process it starts and a Ctrl-C in the terminal does not.
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
        )

        with _running_lock:
            _running.add(self)
        try:
            self._wait_ready(self._process, port)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int) -> None:
        deadline = self._clock() + self._start_timeout
        while True:
            returncode = process.poll()
            if returncode is not None:
                tail = self._stderr_tail()
                raise AzuriteStartError(
                    f"Azurite exited with code {returncode} before opening port "
                    f"{port}; stderr: {tail or '(empty)'}",
                    port_in_use="EADDRINUSE" in tail,
                )
            if _is_azurite(port):
                return
            if self._clock() >= deadline:
                raise AzuriteStartError(
                    f"Azurite did not open port {port} within {self._start_timeout} "
                    f"seconds; stderr: {self._stderr_tail() or '(empty)'}"
                )
            time.sleep(0.05)

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL_BYTES))
        return self._stderr.read().decode("utf-8", "replace").strip()

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)

    def _reap(self) -> None:
        """Wait for an ended process and free what belongs to it."""
        process = self._process
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
                process.wait()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        with _running_lock:
            _running.discard(self)


def _is_azurite(port: int) -> bool:
    """Return whether an Azurite blob service responds to HTTP on ``port``.

    Checking the ``Server`` header, not only an open port, catches another
    program that took the port first.
    """
    connection = http.client.HTTPConnection(_HOST, port, timeout=1.0)
    try:
        connection.request("GET", f"/{ACCOUNT_NAME}?comp=list")
        response = connection.getresponse()
        response.read()
        return response.getheader("Server", "").startswith("Azurite")
    except OSError:
        return False
    finally:
        connection.close()


def _kill_all_at_exit() -> None:
    with _running_lock:
        launchers = list(_running)
    for launcher in launchers:
        launcher.kill()


atexit.register(_kill_all_at_exit)
