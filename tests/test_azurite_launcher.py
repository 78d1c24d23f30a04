"""Tests of the Azurite launcher that tests, the demo and benchmarks use."""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from batcher import _azurite
from batcher._azurite import Azurite, AzuriteStartError


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """Port on 127.0.0.1 held by a listening socket for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _service(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(
        azurite.connection_string, retry_total=0
    )


def test_azurite_shared_instance_serves_connection_string(
    azurite: Azurite, container_name: str
) -> None:
    with _service(azurite) as service:
        service.create_container(container_name)
        names = [c.name for c in service.list_containers()]
    assert container_name in names
    assert azurite.running
    assert azurite.account_url == f"http://127.0.0.1:{azurite.port}/devstoreaccount1"
    assert f"BlobEndpoint={azurite.account_url};" in azurite.connection_string
    assert azurite.account_name == "devstoreaccount1"
    assert azurite.account_key in azurite.connection_string


def test_azurite_restart_after_stop_keeps_port_and_data(
    azurite_factory: Callable[..., Azurite], container_name: str
) -> None:
    instance = azurite_factory()
    port = instance.port
    data_dir = instance.data_dir
    with _service(instance) as service:
        service.create_container(container_name)

    instance.stop()
    instance.start()

    assert instance.port == port
    assert instance.data_dir == data_dir
    with _service(instance) as service:
        names = [c.name for c in service.list_containers()]
    assert container_name in names


def test_azurite_restart_after_kill_serves_same_port(
    azurite_factory: Callable[..., Azurite], container_name: str
) -> None:
    instance = azurite_factory()
    port = instance.port

    instance.kill()
    assert not instance.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    instance.kill()
    instance.start()

    assert instance.port == port
    with _service(instance) as service:
        service.create_container(container_name)


def test_azurite_stop_is_idempotent(azurite_factory: Callable[..., Azurite]) -> None:
    instance = azurite_factory()
    instance.stop()
    instance.stop()
    assert not instance.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", instance.port), timeout=1).close()


def test_azurite_close_removes_temporary_data_dir() -> None:
    with Azurite() as instance:
        data_dir = instance.data_dir
        assert data_dir.is_dir()
    assert not data_dir.exists()
    assert not instance.running


def test_azurite_close_keeps_given_data_dir(tmp_path: Path) -> None:
    with Azurite(data_dir=tmp_path) as instance:
        assert instance.data_dir == tmp_path
    assert tmp_path.is_dir()
    assert any(tmp_path.iterdir())


def test_azurite_missing_binary_names_setup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(_azurite.BINARY_ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="scripts/setup"):
        Azurite().start()


def test_azurite_early_exit_reports_stderr(tmp_path: Path) -> None:
    script = tmp_path / "fake-azurite"
    script.write_text("#!/bin/sh\necho 'fake failure on stderr' >&2\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(AzuriteStartError) as caught:
        Azurite(binary=script).start()
    assert "code 3" in str(caught.value)
    assert "fake failure on stderr" in str(caught.value)


def test_azurite_slow_start_times_out(tmp_path: Path) -> None:
    script = tmp_path / "silent-azurite"
    script.write_text("#!/bin/sh\necho 'still starting' >&2\nexec sleep 60\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    instance = Azurite(binary=script, start_timeout=0.5)
    with pytest.raises(AzuriteStartError, match="did not open port") as caught:
        instance.start()
    assert "still starting" in str(caught.value)
    assert not instance.running
    instance.close()


def test_azurite_given_port_in_use_raises(occupied_port: int) -> None:
    instance = Azurite(port=occupied_port)
    with pytest.raises(AzuriteStartError) as caught:
        instance.start()
    assert caught.value.port_in_use
    instance.close()


def test_azurite_picked_port_clash_retries(
    monkeypatch: pytest.MonkeyPatch, occupied_port: int
) -> None:
    # Another program taking the picked port before Azurite binds it is a
    # race that cannot be forced, so the first pick returns a taken port.
    picks = iter([occupied_port])
    real_free_port = _azurite._free_port
    monkeypatch.setattr(
        _azurite, "_free_port", lambda: next(picks, None) or real_free_port()
    )
    with Azurite() as instance:
        assert instance.port != occupied_port
        assert instance.running
