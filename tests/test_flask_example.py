"""The Flask example: request handling in-process, and three gunicorn workers
sharing capacity through Azurite."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batcher import Batcher, ProvisionedResource
from batcher._azure import AzureBlobLeaseManager
from batcher._azurite import Azurite
from examples.flask_app import create_app
from examples.ingest import IngestService, IngestSettings, SQLiteStore

REPO_ROOT = Path(__file__).resolve().parent.parent

WORKERS = 3
RESERVED_CAPACITY = 50
SHARED_CAPACITY = 600
FACTOR = 100
#: What the workers together may spend in any one second.
CAPACITY_BOUND = WORKERS * RESERVED_CAPACITY + SHARED_CAPACITY
# Each Batcher caps the cost of every sliding second at its capacity, timed
# by its flushes. The test reads hand-over times taken when a callback starts
# on a worker thread, which may lag its flush, so one late batch can land in
# the next second's window. The allowance is one flush's maximum burst per
# Batcher: 1.5 flush intervals of 0.1 s at full capacity.
WINDOW_ALLOWANCE = round(CAPACITY_BOUND * 0.1 * 1.5)

CLIENT_THREADS = 8
REQUESTS_PER_CLIENT = 5
RECORDS_PER_REQUEST = 30
MAX_RECORD_COST = 8


# In-process: the Flask test client on a ProvisionedResource, no Azurite.


@pytest.fixture
def service(tmp_path: Path) -> Iterator[IngestService]:
    settings = IngestSettings(
        database=tmp_path / "ingest.sqlite3", reserved_capacity=500
    )
    service = IngestService.from_settings(settings)
    yield service
    service.stop()


def test_flask_ingest_writes_records(service: IngestService) -> None:
    client = create_app(service).test_client()
    records = [{"id": f"r{i}", "cost": 2, "name": f"n{i}"} for i in range(40)]

    response = client.post("/ingest", json={"records": records})

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["records"] == 40
    assert body["batches"] >= 1
    assert body["elapsed_seconds"] >= 0
    assert service.state == "started"
    rows = _read_records(service.store.path)
    assert sorted(rows) == sorted(str(r["id"]) for r in records)
    assert _batch_count(service.store.path) == body["batches"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "non-empty list"),
        (b'{"records": []}', "non-empty list"),
        (b'{"records": "x"}', "non-empty list"),
        (b'{"records": [3]}', "records[0] must be an object"),
        (b'{"records": [{"cost": 1}]}', "records[0].id"),
        (b'{"records": [{"id": true, "cost": 1}]}', "records[0].id"),
        (b'{"records": [{"id": 1}]}', "records[0].cost"),
        (b'{"records": [{"id": 1, "cost": "3"}]}', "records[0].cost"),
        (b'{"records": [{"id": 1, "cost": 0}]}', "records[0].cost"),
        (b'{"records": [{"id": 1, "cost": 2.5}]}', "records[0].cost"),
        (b'{"records": [{"id": 1, "cost": 501}]}', "above the maximum capacity"),
        (
            b'{"records": [{"id": 1, "cost": 1}, {"id": "1", "cost": 1}]}',
            "appears twice",
        ),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_flask_invalid_body_returns_400(
    service: IngestService, body: bytes, message: str
) -> None:
    client = create_app(service).test_client()

    response = client.post("/ingest", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.is_json
    assert message in response.get_json()["error"]
    assert _read_records(service.store.path) == []


def test_flask_full_buffer_returns_503(tmp_path: Path) -> None:
    # A Batcher that is never started keeps everything in its buffer.
    batcher = Batcher(
        ProvisionedResource(100), buffer_size=2, error_on_full_buffer=True
    )
    service = IngestService(batcher, SQLiteStore(tmp_path / "ingest.sqlite3"))
    client = create_app(service).test_client()
    records = [{"id": i, "cost": 1} for i in range(3)]

    response = client.post("/ingest", json={"records": records})
    service.stop(timeout=0)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "buffer is full" in response.get_json()["error"]
    assert _read_records(service.store.path) == []


def test_flask_slow_write_returns_504(tmp_path: Path) -> None:
    # One cost unit per second cannot write ten records within 0.3 s.
    batcher = Batcher(ProvisionedResource(1), error_on_full_buffer=True)
    store = SQLiteStore(tmp_path / "ingest.sqlite3")
    service = IngestService(batcher, store, request_timeout=0.3)
    client = create_app(service).test_client()
    records = [{"id": i, "cost": 1} for i in range(10)]

    response = client.post("/ingest", json={"records": records})
    service.stop(timeout=0)

    assert response.status_code == 504
    body = response.get_json()
    assert "timed out" in body["error"]
    assert body["records"] == 10
    assert body["stored_records"] < 10
    assert len(_read_records(store.path)) < 10


def test_flask_datastore_failure_returns_500(service: IngestService) -> None:
    with sqlite3.connect(service.store.path) as connection:
        connection.execute("DROP TABLE records")
    connection.close()
    client = create_app(service).test_client()

    response = client.post("/ingest", json={"records": [{"id": 1, "cost": 1}]})

    assert response.status_code == 500
    body = response.get_json()
    assert "failed" in body["error"]
    assert body["failed_records"] == 1


def test_flask_stopped_service_returns_503(service: IngestService) -> None:
    client = create_app(service).test_client()
    service.stop()

    response = client.post("/ingest", json={"records": [{"id": 1, "cost": 1}]})

    assert response.status_code == 503
    assert "stopping" in response.get_json()["error"]


# Three gunicorn workers on Azurite.


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_port(port: int, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited with status {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"gunicorn did not open port {port} within {timeout} s")


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read()), dict(err.headers)


def _read_records(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT record_id FROM records").fetchall()
    connection.close()
    return [row[0] for row in rows]


def _batch_count(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM batches").fetchone()
    connection.close()
    return int(count)


def max_window_cost(batches: list[tuple[float, int]], window: float = 1.0) -> int:
    """Return the largest total cost of batches handed over within any
    ``window`` seconds, from (hand-over time, cost) pairs."""
    ordered = sorted(batches)
    best = 0
    total = 0
    start = 0
    for handed_at, cost in ordered:
        total += cost
        while ordered[start][0] <= handed_at - window:
            total -= ordered[start][1]
            start += 1
        best = max(best, total)
    return best


def test_max_window_cost() -> None:
    assert max_window_cost([]) == 0
    assert max_window_cost([(0.0, 5), (0.5, 3), (0.99, 1), (1.0, 7), (1.6, 2)]) == 11


class _Client(threading.Thread):
    """Sends its requests one after the other, retrying each after a 503."""

    def __init__(self, url: str, requests: list[list[dict[str, Any]]]) -> None:
        super().__init__(name=f"test-client-{url}")
        self.url = url
        self.requests = requests
        self.answers: list[tuple[list[dict[str, Any]], int, dict[str, Any]]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for records in self.requests:
                body = json.dumps({"records": records}).encode()
                status, answer, headers = _post(self.url, body)
                while status == 503:
                    time.sleep(float(headers.get("Retry-After", "1")))
                    status, answer, headers = _post(self.url, body)
                self.answers.append((records, status, answer))
        except BaseException as err:
            self.error = err


@pytest.fixture
def gunicorn_server(
    azurite: Azurite, container_name: str, tmp_path: Path
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """Gunicorn with three workers on a free loopback port; yields its base
    URL, the SQLite file and the process. Stopped with SIGTERM afterwards."""
    database = tmp_path / "ingest.sqlite3"
    port = _free_port()
    env = dict(
        os.environ,
        INGEST_DATABASE=str(database),
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        INGEST_CONTAINER=container_name,
        INGEST_RESERVED_CAPACITY=str(RESERVED_CAPACITY),
        INGEST_SHARED_CAPACITY=str(SHARED_CAPACITY),
        INGEST_FACTOR=str(FACTOR),
        INGEST_REQUEST_TIMEOUT="40",
    )
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                str(WORKERS),
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--bind",
                f"127.0.0.1:{port}",
                "--no-control-socket",
                "--graceful-timeout",
                "20",
                "--timeout",
                "60",
                "examples.flask_app:create_app()",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, server, timeout=20)
        yield f"http://127.0.0.1:{port}", database, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        sys.stderr.write(log_path.read_text(errors="replace")[-4000:])


@pytest.mark.azurite
@pytest.mark.slow
def test_gunicorn_workers_share_capacity(
    gunicorn_server: tuple[str, Path, subprocess.Popen[bytes]],
    azurite: Azurite,
    container_name: str,
) -> None:
    base_url, database, server = gunicorn_server
    url = f"{base_url}/ingest"
    rng = random.Random(7)
    clients = []
    for c in range(CLIENT_THREADS):
        requests = [
            [
                {"id": f"c{c}-q{q}-r{r}", "cost": rng.randint(1, MAX_RECORD_COST)}
                for r in range(RECORDS_PER_REQUEST)
            ]
            for q in range(REQUESTS_PER_CLIENT)
        ]
        clients.append(_Client(url, requests))
    sent = [r for client in clients for request in client.requests for r in request]
    total_cost = sum(r["cost"] for r in sent)
    # Demand well above what the workers could spend in one second.
    assert total_cost > 4 * CAPACITY_BOUND

    bad_status, bad_answer, _ = _post(url, b"{not json")

    began = time.monotonic()
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=90)
    elapsed = time.monotonic() - began
    assert not any(client.is_alive() for client in clients)

    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0

    assert bad_status == 400
    assert "not valid JSON" in bad_answer["error"]
    for client in clients:
        assert client.error is None, repr(client.error)
        assert len(client.answers) == REQUESTS_PER_CLIENT
        for records, status, answer in client.answers:
            assert status == 200, answer
            assert answer["records"] == len(records)

    with sqlite3.connect(database) as connection:
        stored = Counter(
            row[0] for row in connection.execute("SELECT record_id FROM records")
        )
        batches = connection.execute(
            "SELECT handed_at, cost, pid FROM batches"
        ).fetchall()
    connection.close()
    assert set(stored) == {r["id"] for r in sent}
    assert max(stored.values()) == 1
    answered_batches = sum(a["batches"] for c in clients for _, _, a in c.answers)
    assert len(batches) == answered_batches
    assert sum(cost for _, cost, _ in batches) == total_cost

    window_cost = max_window_cost([(t, cost) for t, cost, _ in batches])
    sys.stderr.write(
        f"{len(sent)} records, cost {total_cost}, in {elapsed:.1f} s by "
        f"{len({pid for _, _, pid in batches})} workers; max cost in 1 s: "
        f"{window_cost} (bound {CAPACITY_BOUND})\n"
    )
    assert window_cost <= CAPACITY_BOUND + WINDOW_ALLOWANCE
    # The workers used shared partitions, not only their reserved capacity.
    assert window_cost > WORKERS * RESERVED_CAPACITY

    # Each worker's atexit hook stopped its SharedResource, which released
    # its leases.
    manager = AzureBlobLeaseManager.from_connection_string(
        azurite.connection_string, container_name
    )
    try:
        partitions = manager.partitions(SHARED_CAPACITY // FACTOR)
    finally:
        manager.close()
    assert [p.index for p in partitions if p.leased] == []
    for pid in {pid for _, _, pid in batches}:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
