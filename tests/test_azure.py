"""Tests of AzureBlobLeaseManager against Azurite."""

from __future__ import annotations

import base64
import logging
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.core.credentials import (
    AccessToken,
    AzureNamedKeyCredential,
    AzureSasCredential,
)
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobClient,
    BlobLeaseClient,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    StorageErrorCode,
    generate_container_sas,
)

from batcher import (
    AzureBlobLeaseManager,
    Event,
    EventBus,
    LeaseManager,
    LeaseStoreError,
    PartitionState,
)
from batcher import events as names
from batcher._azurite import Azurite

# A key of the right shape that Azurite does not accept.
WRONG_KEY = base64.b64encode(
    b"not the development account key, 64 bytes long.." * 1
).decode()


def new_lease_id() -> str:
    return str(uuid.uuid4())


def recording_bus() -> tuple[EventBus, list[Event]]:
    """Return a bus and the list that receives every event it delivers."""
    bus = EventBus()
    received: list[Event] = []
    bus.subscribe(received.append)
    return bus, received


def container_sas(azurite: Azurite, container: str) -> str:
    return generate_container_sas(
        azurite.account_name,
        container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(
            read=True, add=True, create=True, write=True, delete=True, list=True
        ),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )


def create_container(azurite: Azurite, container: str) -> None:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(container)


@pytest.fixture
def provisioned(
    azurite: Azurite, container_name: str
) -> Iterator[tuple[AzureBlobLeaseManager, AzureBlobLeaseManager]]:
    """Two managers on one container with partitions 0-3 provisioned."""
    first = AzureBlobLeaseManager.from_connection_string(
        azurite.connection_string, container_name
    )
    second = AzureBlobLeaseManager(
        azurite.account_url, container_name, azurite.account_key
    )
    first.provision(4, EventBus())
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def raw_container(azurite: Azurite, container_name: str) -> Iterator[ContainerClient]:
    """SDK client on ``container_name`` for checks and for faults made by hand."""
    with ContainerClient.from_connection_string(
        azurite.connection_string, container_name
    ) as client:
        yield client


@pytest.fixture
def closed_port() -> int:
    """Port on 127.0.0.1 that nothing listens on, as far as a test can tell."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# Provisioning.


def test_provision_new_container_creates_all(
    lease_manager: AzureBlobLeaseManager,
    raw_container: ContainerClient,
    azurite: Azurite,
    container_name: str,
) -> None:
    bus, received = recording_bus()

    lease_manager.provision(3, bus)

    container_url = f"{azurite.account_url}/{container_name}"
    assert [(e.name, e.val, e.msg) for e in received] == [
        (names.CREATED_CONTAINER, 0, container_url),
        (names.CREATED_BLOB, 0, None),
        (names.CREATED_BLOB, 1, None),
        (names.CREATED_BLOB, 2, None),
    ]
    blobs = {blob.name: blob.size for blob in raw_container.list_blobs()}
    assert blobs == {"0": 0, "1": 0, "2": 0}


def test_provision_existing_container_verifies(
    lease_manager: AzureBlobLeaseManager, azurite: Azurite, container_name: str
) -> None:
    lease_manager.provision(2, EventBus())
    bus, received = recording_bus()

    lease_manager.provision(4, bus)

    container_url = f"{azurite.account_url}/{container_name}"
    assert [(e.name, e.val, e.msg) for e in received] == [
        (names.VERIFIED_CONTAINER, 0, container_url),
        (names.VERIFIED_BLOB, 0, None),
        (names.VERIFIED_BLOB, 1, None),
        (names.CREATED_BLOB, 2, None),
        (names.CREATED_BLOB, 3, None),
    ]


def test_provision_keeps_lease_and_owner(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
) -> None:
    first, second = provisioned
    assert first.acquire(1, new_lease_id(), 15, "holder")
    bus, received = recording_bus()

    second.provision(4, bus)

    assert [e.name for e in received[1:]] == [names.VERIFIED_BLOB] * 4
    assert second.partitions(4)[1] == PartitionState(1, True, False, "holder")


def test_provision_zero_partitions_creates_container(
    lease_manager: AzureBlobLeaseManager, raw_container: ContainerClient
) -> None:
    bus, received = recording_bus()

    lease_manager.provision(0, bus)

    assert [e.name for e in received] == [names.CREATED_CONTAINER]
    assert raw_container.exists()


def test_provision_many_partitions_concurrently(
    lease_manager: AzureBlobLeaseManager, raw_container: ContainerClient
) -> None:
    bus, received = recording_bus()

    lease_manager.provision(30, bus)

    assert [e.val for e in received[1:]] == list(range(30))
    assert len(list(raw_container.list_blobs())) == 30


def test_provision_events_come_from_calling_thread(
    lease_manager: AzureBlobLeaseManager,
) -> None:
    bus = EventBus()
    threads: list[str] = []
    bus.subscribe(lambda event: threads.append(threading.current_thread().name))

    lease_manager.provision(5, bus)

    assert set(threads) == {threading.current_thread().name}


def test_provision_unreachable_raises(closed_port: int) -> None:
    manager = AzureBlobLeaseManager(
        f"http://127.0.0.1:{closed_port}/devstoreaccount1", "unreachable", WRONG_KEY
    )
    with pytest.raises(LeaseStoreError, match="connection refused"):
        manager.provision(2, EventBus())
    manager.close()


# Leases between two managers.


def test_acquire_held_partition_returns_false(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
) -> None:
    first, second = provisioned
    first_id, second_id = new_lease_id(), new_lease_id()

    assert first.acquire(0, first_id, 15, "first")
    assert not second.acquire(0, second_id, 15, "second")
    assert first.partitions(1) == [PartitionState(0, True, False, "first")]


def test_acquire_same_lease_id_again_succeeds(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
) -> None:
    first, _ = provisioned
    lease_id = new_lease_id()

    assert first.acquire(0, lease_id, 15, "first")
    assert first.acquire(0, lease_id, 15, "first")


def test_lease_round_trip_between_managers(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
) -> None:
    first, second = provisioned
    first_id, second_id = new_lease_id(), new_lease_id()

    assert first.acquire(2, first_id, 15, "first")
    assert first.renew(2, first_id, 15)
    assert not second.renew(2, second_id, 15)
    second.release(2, second_id)
    assert first.partitions(3)[2].leased

    first.release(2, first_id)
    assert not first.partitions(3)[2].leased
    assert second.acquire(2, second_id, 60, "second")
    assert not first.renew(2, first_id, 15)
    assert first.partitions(3)[2] == PartitionState(2, True, False, "second")


def test_infinite_lease_round_trip(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
) -> None:
    first, second = provisioned
    lease_id = new_lease_id()

    assert first.acquire(3, lease_id, -1, "first")
    assert first.renew(3, lease_id, -1)
    assert not second.acquire(3, new_lease_id(), -1, "second")
    first.release(3, lease_id)
    assert second.acquire(3, new_lease_id(), -1.0, "second")


def test_break_lease_blocks_renew_and_acquire(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
) -> None:
    first, second = provisioned
    first_id = new_lease_id()
    assert first.acquire(1, first_id, 15, "first")

    second.break_lease(1)

    assert second.partitions(2)[1] == PartitionState(1, True, True, "first")
    assert not first.renew(1, first_id, 15)
    assert not second.acquire(1, new_lease_id(), 15, "second")


def test_break_lease_unleased_does_nothing(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
) -> None:
    first, _ = provisioned
    first.break_lease(0)
    assert first.partitions(1) == [PartitionState(0, False, False, None)]


def test_release_after_break_returns_quietly(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
    raw_container: ContainerClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = provisioned
    first_id = new_lease_id()
    assert first.acquire(0, first_id, 15, "first")
    BlobLeaseClient(raw_container.get_blob_client("0")).break_lease(
        lease_break_period=0
    )
    assert second.acquire(0, new_lease_id(), 15, "second")

    with caplog.at_level(logging.DEBUG, logger="batcher"):
        first.release(0, first_id)

    assert "already lost" in caplog.text
    assert second.partitions(1)[0].owner == "second"


def test_lease_calls_on_missing_blob_raise(
    lease_manager: AzureBlobLeaseManager,
) -> None:
    lease_manager.provision(1, EventBus())
    calls: list[Callable[[], object]] = [
        lambda: lease_manager.acquire(5, new_lease_id(), 15, "owner"),
        lambda: lease_manager.renew(5, new_lease_id(), 15),
        lambda: lease_manager.release(5, new_lease_id()),
        lambda: lease_manager.break_lease(5),
    ]
    for call in calls:
        with pytest.raises(LeaseStoreError, match="partition 5") as caught:
            call()
        assert caught.value.status_code == 404
        assert caught.value.error_code == StorageErrorCode.BLOB_NOT_FOUND
        assert isinstance(caught.value.error_code, StorageErrorCode)


def test_acquire_owner_not_recorded_still_holds(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A failure between the lease and the metadata request cannot be made to
    # happen on a real server, so the metadata call raises here.
    first, second = provisioned

    def fail(*args: Any, **kwargs: Any) -> None:
        raise HttpResponseError(message="metadata rejected")

    monkeypatch.setattr(BlobClient, "set_blob_metadata", fail)
    with caplog.at_level(logging.WARNING, logger="batcher"):
        assert first.acquire(2, new_lease_id(), 15, "first")
    monkeypatch.undo()

    assert "owner was not recorded" in caplog.text
    assert not second.acquire(2, new_lease_id(), 15, "second")
    assert second.partitions(3)[2] == PartitionState(2, True, False, None)


def test_acquire_concurrent_threads_one_wins(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
) -> None:
    first, _ = provisioned
    results: list[bool] = []
    results_lock = threading.Lock()
    start = threading.Barrier(6)

    def contend(number: int) -> None:
        start.wait()
        won = first.acquire(0, new_lease_id(), 15, f"thread-{number}")
        with results_lock:
            results.append(won)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 5 + [True]


# Partition states.


def test_partitions_reports_states_in_one_request(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
    raw_container: ContainerClient,
) -> None:
    first, second = provisioned
    assert first.acquire(0, new_lease_id(), 15, "first")
    released_id = new_lease_id()
    assert second.acquire(1, released_id, 15, "second")
    second.release(1, released_id)
    assert second.acquire(2, new_lease_id(), 15, "second")
    first.break_lease(2)
    assert first.acquire(3, new_lease_id(), 15, "first")
    BlobLeaseClient(raw_container.get_blob_client("3")).break_lease(
        lease_break_period=0
    )
    before = first.request_count

    states = first.partitions(6)

    assert first.request_count == before + 1
    assert states == [
        PartitionState(0, True, False, "first"),
        PartitionState(1, False, False, None),
        PartitionState(2, True, True, "second"),
        PartitionState(3, False, False, None),
        PartitionState(4, False, False, None),
        PartitionState(5, False, False, None),
    ]
    assert states[0].index == 0
    assert first.partitions(2) == states[:2]


def test_partitions_ignores_other_blobs(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
    raw_container: ContainerClient,
) -> None:
    first, _ = provisioned
    for name in ("01", "x", "-1", "7"):
        raw_container.upload_blob(name, b"")
    BlobLeaseClient(raw_container.get_blob_client("01")).acquire(15)

    assert first.partitions(2) == [
        PartitionState(0, False, False, None),
        PartitionState(1, False, False, None),
    ]
    assert first.partitions(8)[7] == PartitionState(7, False, False, None)


def test_partitions_missing_container_raises(
    lease_manager: AzureBlobLeaseManager,
) -> None:
    with pytest.raises(LeaseStoreError, match="list blobs") as caught:
        lease_manager.partitions(2)
    assert caught.value.status_code == 404
    assert caught.value.error_code == StorageErrorCode.CONTAINER_NOT_FOUND


@pytest.mark.slow
def test_partitions_expired_lease_is_free(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
    raw_container: ContainerClient,
) -> None:
    first, second = provisioned
    lease_id = new_lease_id()
    assert first.acquire(0, lease_id, 15, "first")

    time.sleep(15.5)

    assert raw_container.get_blob_client("0").get_blob_properties().lease.state == (
        "expired"
    )
    assert second.partitions(1) == [PartitionState(0, False, False, None)]
    assert first.renew(0, lease_id, 15)


# Credentials.


def exercise(manager: AzureBlobLeaseManager) -> None:
    """Provision, lease, list and release through ``manager``."""
    manager.provision(2, EventBus())
    lease_id = new_lease_id()
    assert manager.acquire(1, lease_id, 15, "owner")
    assert manager.renew(1, lease_id, 15)
    assert manager.partitions(2)[1] == PartitionState(1, True, False, "owner")
    manager.break_lease(1)
    manager.release(1, lease_id)


def test_credential_account_key_string(azurite: Azurite, container_name: str) -> None:
    manager = AzureBlobLeaseManager(
        azurite.account_url, container_name, azurite.account_key
    )
    exercise(manager)
    manager.close()


def test_credential_named_key(azurite: Azurite, container_name: str) -> None:
    credential = AzureNamedKeyCredential(azurite.account_name, azurite.account_key)
    manager = AzureBlobLeaseManager(azurite.account_url, container_name, credential)
    exercise(manager)
    manager.close()


def test_credential_connection_string(azurite: Azurite, container_name: str) -> None:
    manager = AzureBlobLeaseManager.from_connection_string(
        azurite.connection_string, container_name
    )
    exercise(manager)
    manager.close()


def test_credential_sas_token_string(azurite: Azurite, container_name: str) -> None:
    create_container(azurite, container_name)
    sas = container_sas(azurite, container_name)
    manager = AzureBlobLeaseManager(azurite.account_url, container_name, sas)
    bus, received = recording_bus()

    manager.provision(1, bus)
    exercise(manager)

    assert received[0].name == names.VERIFIED_CONTAINER
    manager.close()


def test_credential_sas_credential_object(
    azurite: Azurite, container_name: str
) -> None:
    create_container(azurite, container_name)
    sas = AzureSasCredential(container_sas(azurite, container_name))
    manager = AzureBlobLeaseManager(azurite.account_url, container_name, sas)
    exercise(manager)
    manager.close()


def test_credential_sas_in_account_url(azurite: Azurite, container_name: str) -> None:
    create_container(azurite, container_name)
    sas = container_sas(azurite, container_name)
    manager = AzureBlobLeaseManager(f"{azurite.account_url}?{sas}", container_name)
    exercise(manager)
    assert "sig=" not in repr(manager)
    assert manager.container_url == f"{azurite.account_url}/{container_name}"
    manager.close()


def test_credential_sas_missing_container_explains(
    azurite: Azurite, container_name: str
) -> None:
    sas = container_sas(azurite, container_name)
    manager = AzureBlobLeaseManager(azurite.account_url, container_name, sas)
    with pytest.raises(LeaseStoreError, match="create it first") as caught:
        manager.provision(1, EventBus())
    assert caught.value.status_code == 403
    manager.close()


class FakeTokenCredential:
    """TokenCredential that returns a fixed token and records each call."""

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken("fake-token", int(time.time()) + 3600)


def test_credential_token_accepted(closed_port: int) -> None:
    credential = FakeTokenCredential()
    manager = AzureBlobLeaseManager(
        f"https://127.0.0.1:{closed_port}/devstoreaccount1", "tokens", credential
    )
    assert isinstance(manager, LeaseManager)
    assert credential.calls == 0
    assert manager.request_count == 0
    manager.close()


# Argument checks.

BAD_CONTAINERS = ["ab", "a" * 64, "Abc", "a--b", "-abc", "abc-", "ab_c", "ab c", ""]


@pytest.mark.parametrize("container", BAD_CONTAINERS)
def test_constructor_bad_container_raises(azurite: Azurite, container: str) -> None:
    with pytest.raises(ValueError, match="container"):
        AzureBlobLeaseManager(azurite.account_url, container, azurite.account_key)
    with pytest.raises(ValueError, match="container"):
        AzureBlobLeaseManager.from_connection_string(
            azurite.connection_string, container
        )


def test_constructor_good_container_edges(azurite: Azurite) -> None:
    for container in ("abc", "a" * 63, "a-b-c", "0ab", "ab9"):
        AzureBlobLeaseManager(azurite.account_url, container).close()


@pytest.mark.parametrize(
    "account_url",
    [
        "ftp://host/devstoreaccount1",
        "not a url",
        "http://",
        "https:///path",
        "127.0.0.1",
    ],
)
def test_constructor_bad_account_url_raises(account_url: str) -> None:
    with pytest.raises(ValueError, match="account_url"):
        AzureBlobLeaseManager(account_url, "container")


def test_constructor_account_url_error_hides_query() -> None:
    with pytest.raises(ValueError, match="account_url") as caught:
        AzureBlobLeaseManager("ftp://host/path?sig=SECRETSIG", "container")
    assert "SECRETSIG" not in str(caught.value)


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ((None, "container"), "account_url"),
        (("http://127.0.0.1:1/a", 3), "container"),
        (("http://127.0.0.1:1/a", "container", 3), "credential"),
        (("http://127.0.0.1:1/a", "container", b"key"), "credential"),
    ],
)
def test_constructor_wrong_types_raise(arguments: tuple[Any, ...], name: str) -> None:
    with pytest.raises(TypeError, match=name):
        AzureBlobLeaseManager(*arguments)


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
    ]
    + [("2", TypeError), (True, TypeError), (None, TypeError)],
)
def test_constructor_bad_timeout_raises(timeout: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="timeout"):
        AzureBlobLeaseManager("http://127.0.0.1:1/a", "container", timeout=timeout)
    with pytest.raises(error, match="timeout"):
        AzureBlobLeaseManager.from_connection_string(
            "AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/a",
            "container",
            timeout=timeout,
        )


def test_constructor_bad_provision_workers_raises() -> None:
    with pytest.raises(ValueError, match="provision_workers"):
        AzureBlobLeaseManager("http://127.0.0.1:1/a", "container", provision_workers=0)
    with pytest.raises(TypeError, match="provision_workers"):
        AzureBlobLeaseManager(
            "http://127.0.0.1:1/a",
            "container",
            provision_workers=2.0,  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    "conn_str",
    [
        "",
        "garbage",
        "AccountKey=SECRETKEY0",
        "AccountName=a;AccountKey=SECRETKEY0;BlobEndpoint=ftp://host/a",
        "AccountName=a;AccountKey=SECRETKEY0;SECRETKEY0",
        "AccountName=a;AccountKey=SECRETKEY0;BlobEndpoint=",
        "AccountName=a;AccountKey=SECRETKEY0;BlobSecondaryEndpoint=http://h/a",
    ],
)
def test_connection_string_malformed_hides_value(conn_str: str) -> None:
    with pytest.raises(ValueError, match="conn_str") as caught:
        AzureBlobLeaseManager.from_connection_string(conn_str, "container")
    assert "SECRETKEY0" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_connection_string_wrong_type_raises() -> None:
    with pytest.raises(TypeError, match="conn_str"):
        AzureBlobLeaseManager.from_connection_string(b"AccountName=a", "container")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "name", "error"),
    [
        (lambda m: m.acquire(-1, new_lease_id(), 15, "o"), "index", ValueError),
        (lambda m: m.acquire(True, new_lease_id(), 15, "o"), "index", TypeError),
        (lambda m: m.acquire(0, "not-a-guid", 15, "o"), "lease_id", ValueError),
        (lambda m: m.acquire(0, 7, 15, "o"), "lease_id", TypeError),
        (lambda m: m.acquire(0, new_lease_id(), 14, "o"), "duration", ValueError),
        (lambda m: m.acquire(0, new_lease_id(), 61, "o"), "duration", ValueError),
        (lambda m: m.acquire(0, new_lease_id(), 15.5, "o"), "duration", ValueError),
        (lambda m: m.acquire(0, new_lease_id(), 0, "o"), "duration", ValueError),
        (lambda m: m.acquire(0, new_lease_id(), math.nan, "o"), "duration", ValueError),
        (lambda m: m.acquire(0, new_lease_id(), "15", "o"), "duration", TypeError),
        (lambda m: m.acquire(0, new_lease_id(), 15, None), "owner", TypeError),
        (lambda m: m.acquire(0, new_lease_id(), 15, "caf\u00e9"), "owner", ValueError),
        (lambda m: m.acquire(0, new_lease_id(), 15, "a\nb"), "owner", ValueError),
        (lambda m: m.renew(0, new_lease_id(), 100), "duration", ValueError),
        (lambda m: m.renew(0, "x", 15), "lease_id", ValueError),
        (lambda m: m.release(-2, new_lease_id()), "index", ValueError),
        (lambda m: m.break_lease("0"), "index", TypeError),
        (lambda m: m.partitions(-1), "count", ValueError),
        (lambda m: m.provision(-1, EventBus()), "count", ValueError),
        (lambda m: m.provision(1, None), "events", TypeError),
    ],
)
def test_method_bad_argument_raises_before_request(
    closed_port: int,
    call: Callable[[AzureBlobLeaseManager], object],
    name: str,
    error: type[Exception],
) -> None:
    manager = AzureBlobLeaseManager(
        f"http://127.0.0.1:{closed_port}/devstoreaccount1", "container"
    )
    with pytest.raises(error, match=name):
        call(manager)
    assert manager.request_count == 0
    manager.close()


# Secrets.


def assert_no_secret(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text


def test_secrets_absent_everywhere(
    azurite: Azurite, container_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    create_container(azurite, container_name)
    sas = container_sas(azurite, container_name)
    signature = sas.split("sig=")[1]
    secrets = [azurite.account_key, sas, signature, azurite.connection_string]
    bus, received = recording_bus()

    with caplog.at_level(logging.DEBUG):
        managers = [
            AzureBlobLeaseManager.from_connection_string(
                azurite.connection_string, container_name
            ),
            AzureBlobLeaseManager(
                azurite.account_url, container_name, azurite.account_key
            ),
            AzureBlobLeaseManager(azurite.account_url, container_name, sas),
            AzureBlobLeaseManager(f"{azurite.account_url}?{sas}", container_name),
        ]
        for index, manager in enumerate(managers):
            manager.provision(4, bus)
            lease_id = new_lease_id()
            assert manager.acquire(index, lease_id, 15, "owner")
            manager.partitions(4)
            manager.break_lease(index)
            assert not manager.renew(index, lease_id, 15)
            manager.release(index, new_lease_id())
            with pytest.raises(LeaseStoreError) as caught:
                manager.renew(9, lease_id, 15)
            assert_no_secret(str(caught.value), secrets)
            assert_no_secret(repr(manager), secrets)
            manager.close()

    assert len(received) == 20
    for event in received:
        assert_no_secret(repr(event), secrets)
    assert caplog.records
    for record in caplog.records:
        assert_no_secret(record.getMessage(), secrets)
    assert_no_secret(caplog.text, secrets)


def test_wrong_account_key_raises_without_key(
    azurite: Azurite, container_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = AzureBlobLeaseManager(azurite.account_url, container_name, WRONG_KEY)
    connection_string = azurite.connection_string.replace(
        azurite.account_key, WRONG_KEY
    )
    from_string = AzureBlobLeaseManager.from_connection_string(
        connection_string, container_name
    )
    calls: list[Callable[[], object]] = [
        lambda: manager.provision(1, EventBus()),
        lambda: manager.acquire(0, new_lease_id(), 15, "owner"),
        lambda: manager.partitions(1),
        lambda: from_string.provision(1, EventBus()),
        lambda: from_string.renew(0, new_lease_id(), 15),
    ]

    with caplog.at_level(logging.DEBUG):
        for call in calls:
            with pytest.raises(LeaseStoreError) as caught:
                call()
            error = caught.value
            assert error.status_code == 403
            assert error.error_code == StorageErrorCode.AUTHORIZATION_FAILURE
            assert error.__cause__ is None
            assert error.__context__ is None
            for text in (str(error), repr(error), repr(error.args)):
                assert_no_secret(text, [WRONG_KEY, connection_string])

    assert_no_secret(caplog.text, [WRONG_KEY, connection_string])
    manager.close()
    from_string.close()


def test_wrong_sas_raises_without_signature(
    azurite: Azurite, container_name: str
) -> None:
    create_container(azurite, container_name)
    sas = generate_container_sas(
        azurite.account_name,
        container_name,
        account_key=WRONG_KEY,
        permission=ContainerSasPermissions(read=True, write=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    manager = AzureBlobLeaseManager(azurite.account_url, container_name, sas)

    with pytest.raises(LeaseStoreError) as caught:
        manager.acquire(0, new_lease_id(), 15, "owner")

    assert caught.value.status_code == 403
    assert_no_secret(repr(caught.value), [sas, sas.split("sig=")[1]])
    manager.close()


def test_repr_shows_url_and_container(azurite: Azurite, container_name: str) -> None:
    manager = AzureBlobLeaseManager.from_connection_string(
        azurite.connection_string, container_name
    )
    assert repr(manager) == (
        f"AzureBlobLeaseManager(account_url={azurite.account_url!r}, "
        f"container={container_name!r})"
    )
    manager.close()


# Network failures and timeouts.


def test_closed_port_raises_promptly(closed_port: int) -> None:
    sas = "sv=2026-10-06&sr=c&sp=rl&sig=SECRETSIGNATURE"
    manager = AzureBlobLeaseManager(
        f"http://127.0.0.1:{closed_port}/devstoreaccount1",
        "container",
        sas,
        timeout=0.5,
    )
    started = time.monotonic()

    with pytest.raises(LeaseStoreError, match="connection refused") as caught:
        manager.acquire(0, new_lease_id(), 15, "owner")

    # Generous bound: the SDK default read timeout alone is 60 seconds.
    assert time.monotonic() - started < 20
    assert "SECRETSIGNATURE" not in repr(caught.value)
    assert "?" not in str(caught.value)
    assert caught.value.status_code is None
    assert manager.request_count == 1
    manager.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Port of a server that accepts connections and never responds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_unresponsive_server_times_out(silent_server: int) -> None:
    manager = AzureBlobLeaseManager(
        f"http://127.0.0.1:{silent_server}/devstoreaccount1",
        "container",
        WRONG_KEY,
        timeout=0.3,
    )
    started = time.monotonic()

    with pytest.raises(LeaseStoreError, match="timed out"):
        manager.renew(0, new_lease_id(), 15)

    assert time.monotonic() - started < 20
    assert manager.request_count == 1
    manager.close()


def test_storage_killed_then_restarted(
    azurite_factory: Callable[..., Azurite], container_name: str
) -> None:
    instance = azurite_factory()
    manager = AzureBlobLeaseManager.from_connection_string(
        instance.connection_string, container_name, timeout=1.0
    )
    manager.provision(1, EventBus())
    instance.stop()
    instance.start()
    lease_id = new_lease_id()
    assert manager.acquire(0, lease_id, 15, "owner")

    instance.kill()
    with pytest.raises(LeaseStoreError, match="connection"):
        manager.renew(0, lease_id, 15)
    instance.start()

    assert manager.partitions(1)[0].index == 0
    manager.close()


# Request counting.


def test_request_count_per_operation(
    lease_manager: AzureBlobLeaseManager,
) -> None:
    def sent(action: Callable[[], object]) -> int:
        before = lease_manager.request_count
        action()
        return lease_manager.request_count - before

    lease_id, other_id = new_lease_id(), new_lease_id()
    assert lease_manager.request_count == 0
    assert sent(lambda: lease_manager.provision(3, EventBus())) == 4
    assert sent(lambda: lease_manager.provision(3, EventBus())) == 4
    assert sent(lambda: lease_manager.acquire(0, lease_id, 15, "owner")) == 2
    assert sent(lambda: lease_manager.acquire(0, other_id, 15, "other")) == 1
    assert sent(lambda: lease_manager.renew(0, lease_id, 15)) == 1
    assert sent(lambda: lease_manager.renew(0, other_id, 15)) == 1
    assert sent(lambda: lease_manager.partitions(3)) == 1
    assert sent(lambda: lease_manager.break_lease(0)) == 1
    assert sent(lambda: lease_manager.release(0, lease_id)) == 1
    assert sent(lambda: lease_manager.break_lease(1)) == 1


def test_request_count_from_threads(
    provisioned: tuple[AzureBlobLeaseManager, AzureBlobLeaseManager],
) -> None:
    first, _ = provisioned
    before = first.request_count

    def list_many() -> None:
        for _ in range(10):
            first.partitions(4)

    threads = [threading.Thread(target=list_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert first.request_count == before + 40


def test_close_is_idempotent(lease_manager: AzureBlobLeaseManager) -> None:
    lease_manager.close()
    lease_manager.close()
