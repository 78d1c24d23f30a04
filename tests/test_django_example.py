"""The Django example through Django's test client, without Azurite.

Django's settings and app registry are process-wide and cannot be set up
twice with different settings. No other test module uses Django, so this
one sets it up in the test process. After the module, the environment
variables are restored and the service that ``ready()`` started is stopped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import django
import pytest
from django.apps import apps
from django.test import Client

from batcher import Batcher, ProvisionedResource
from examples.django_app.ingest.apps import IngestAppConfig
from examples.django_app.manage import serves_requests
from examples.ingest import IngestService, SQLiteStore


@pytest.fixture(scope="module")
def app_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestAppConfig]:
    """Django set up on the example settings; yields the ingest app's config."""
    database = tmp_path_factory.mktemp("django") / "ingest.sqlite3"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
        patch.setenv("INGEST_DATABASE", str(database))
        patch.setenv("INGEST_RESERVED_CAPACITY", "1000")
        patch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
        django.setup()
        config = apps.get_app_config("ingest")
        assert isinstance(config, IngestAppConfig)
        try:
            yield config
        finally:
            if config.service is not None:
                config.service.stop()


@pytest.fixture
def client(app_config: IngestAppConfig) -> Client:
    return Client()


def _stored_ids(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT record_id FROM records").fetchall()
    connection.close()
    return [row[0] for row in rows]


def test_django_ready_starts_service(app_config: IngestAppConfig) -> None:
    service = app_config.service

    assert service is not None
    assert service.state == "started"
    assert isinstance(service.batcher.rate_limiter, ProvisionedResource)


def test_django_ingest_writes_records(
    app_config: IngestAppConfig, client: Client
) -> None:
    assert app_config.service is not None
    records = [{"id": f"d{i}", "cost": 5, "kind": "test"} for i in range(60)]

    response = client.post(
        "/ingest", {"records": records}, content_type="application/json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["records"] == 60
    assert body["batches"] >= 1
    assert body["elapsed_seconds"] >= 0
    stored = _stored_ids(app_config.service.store.path)
    assert sorted(stored) == sorted(str(r["id"]) for r in records)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'"records"', "JSON object"),
        (b'{"items": []}', "non-empty list"),
        (b'{"records": []}', "non-empty list"),
        (b'{"records": [{"id": 1, "cost": -1}]}', "records[0].cost"),
        (b'{"records": [{"id": 1, "cost": null}]}', "records[0].cost"),
        (b'{"records": [{"id": [1], "cost": 1}]}', "records[0].id"),
        (b'{"records": [{"id": 1, "cost": 1001}]}', "above the maximum capacity"),
    ],
)
def test_django_invalid_body_returns_400(
    client: Client, body: bytes, message: str
) -> None:
    response = client.post("/ingest", body, content_type="application/json")

    assert response.status_code == 400
    assert message in response.json()["error"]


def test_django_get_returns_405(client: Client) -> None:
    response = client.get("/ingest")

    assert response.status_code == 405


def test_django_full_buffer_returns_503(
    app_config: IngestAppConfig,
    client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Batcher that is never started keeps everything in its buffer.
    batcher = Batcher(
        ProvisionedResource(100), buffer_size=2, error_on_full_buffer=True
    )
    full = IngestService(batcher, SQLiteStore(tmp_path / "full.sqlite3"))
    monkeypatch.setattr(app_config, "service", full)
    records = [{"id": i, "cost": 1} for i in range(3)]

    response = client.post(
        "/ingest", {"records": records}, content_type="application/json"
    )
    full.stop(timeout=0)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "buffer is full" in response.json()["error"]
    assert _stored_ids(full.store.path) == []


def test_django_without_service_returns_503(
    app_config: IngestAppConfig, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_config, "service", None)

    response = client.post(
        "/ingest", {"records": [{"id": 1, "cost": 1}]}, content_type="application/json"
    )

    assert response.status_code == 503
    assert "not running" in response.json()["error"]


@pytest.mark.parametrize(
    ("argv", "run_main", "expected"),
    [
        (["manage.py", "migrate"], None, False),
        (["manage.py"], None, False),
        (["manage.py", "runserver"], None, False),
        (["manage.py", "runserver"], "true", True),
        (["manage.py", "runserver", "--noreload"], None, True),
    ],
)
def test_manage_serves_requests(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    run_main: str | None,
    expected: bool,
) -> None:
    if run_main is None:
        monkeypatch.delenv("RUN_MAIN", raising=False)
    else:
        monkeypatch.setenv("RUN_MAIN", run_main)

    assert serves_requests(argv) is expected
