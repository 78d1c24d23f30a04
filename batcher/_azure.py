"""AzureBlobLeaseManager: partitions as zero-byte blobs leased through Azure Blob Storage."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from azure.core.exceptions import (
    AzureError,
)
from azure.core.pipeline import PipelineRequest
from azure.storage.blob import (
    BlobClient,
    BlobLeaseClient,
    ContainerClient,
    StorageErrorCode,
)

from . import events as event_names
from ._azure_checks import (
    _blob_endpoint_valid,
    _check_account_url,
    _check_container,
    _check_credential,
    _check_duration,
    _check_lease_id,
    _check_owner,
    _error_code,
    _strip_query,
    _translate,
)
from ._bus import EventBus
from ._errors import LeaseStoreError
from ._lease import PartitionState
from ._validate import check_int, check_seconds

__all__ = ["AzureBlobLeaseManager"]

logger = logging.getLogger(__name__)

#: Default limit in seconds on connecting and on waiting for each response.
DEFAULT_TIMEOUT: Final = 2.0
#: Default number of threads that create partition blobs during provisioning.
DEFAULT_PROVISION_WORKERS: Final = 8
#: Metadata key under which the lease holder records its owner name.
OWNER_METADATA_KEY: Final = "owner"

# Lease states that Azure reports as ``x-ms-lease-state`` and in blob lists.
# "breaking" still blocks other acquirers until the current term ends, while
# "expired" and "broken" leases are free to acquire like "available" ones.
_HELD_LEASE_STATES: Final = frozenset({"leased", "breaking"})
# Error codes that mean the caller no longer has the lease it names.
# The sets hold plain values because an Enum member hashes by its name.
_LEASE_LOST_CODES: Final = frozenset(
    code.value
    for code in (
        StorageErrorCode.LEASE_ID_MISMATCH_WITH_LEASE_OPERATION,
        StorageErrorCode.LEASE_IS_BROKEN_AND_CANNOT_BE_RENEWED,
        StorageErrorCode.LEASE_NOT_PRESENT_WITH_LEASE_OPERATION,
        StorageErrorCode.LEASE_LOST,
    )
)
# Error codes of a create-if-missing upload that mean the blob already exists.
# A leased blob may return 412 LeaseIdMissing instead of 409 BlobAlreadyExists.
_BLOB_EXISTS_CODES: Final = frozenset(
    code.value
    for code in (
        StorageErrorCode.BLOB_ALREADY_EXISTS,
        StorageErrorCode.LEASE_ID_MISSING,
    )
)


class _RedactSasSignature(logging.Filter):
    """Replace SAS signatures in urllib3's DEBUG lines, which quote request URLs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "sig=" in message.lower():
            record.msg = _SAS_SIGNATURE.sub(r"\1REDACTED", message)
            record.args = None
        return True


_SAS_SIGNATURE: Final = re.compile(r"(\bsig=)[^&\s'\"]+", re.IGNORECASE)
# A filter applies to records logged on its own logger only, so each urllib3
# logger that writes request URLs gets one.
for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_RedactSasSignature())


class AzureBlobLeaseManager:
    """Lease store that keeps one zero-byte blob per partition in an Azure container.

    Blob ``"i"`` is partition ``i``; a lease on it grants the partition, and
    the holder's owner name goes into the blob's metadata. Each request is
    sent once, with no SDK retries, and fails after ``timeout`` seconds of
    connecting or waiting for a response, because the caller retries on its
    own schedule. Every failure other than lease contention raises
    ``LeaseStoreError`` with a message free of credentials.

    Thread-safe: a SharedResource calls one manager from several threads.

    Args:
        account_url: Blob service URL, such as
            ``https://ACCOUNT.blob.core.windows.net``; http or https.
        container: Container that contains the partition blobs. Azure allows 3 to
            63 lowercase letters, digits and single hyphens, starting and
            ending with a letter or digit.
        credential: Account key string, SAS token string,
            ``AzureNamedKeyCredential``, ``AzureSasCredential``, any azure-core
            ``TokenCredential`` such as azure-identity's
            ``DefaultAzureCredential``, or None when ``account_url`` carries a
            SAS token. Token credentials need an https URL.
        timeout: Seconds allowed to connect and, separately, to wait for each
            response.
        provision_workers: Threads that create partition blobs in
            ``provision()``.
    """

    def __init__(
        self,
        account_url: str,
        container: str,
        credential: Any = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        provision_workers: int = DEFAULT_PROVISION_WORKERS,
    ) -> None:
        _check_account_url(account_url)
        _check_container(container)
        _check_credential(credential)
        timeout = check_seconds("timeout", timeout)
        provision_workers = check_int("provision_workers", provision_workers, minimum=1)

        self._init_counters()
        client = ContainerClient(
            account_url, container, credential=credential, **self._options(timeout)
        )
        self._setup(client, container, timeout, provision_workers)

    @classmethod
    def from_connection_string(
        cls,
        conn_str: str,
        container: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        provision_workers: int = DEFAULT_PROVISION_WORKERS,
    ) -> AzureBlobLeaseManager:
        """Build a manager from a storage account connection string.

        Raises:
            ValueError: the connection string is malformed; the message leaves
                the string out because it carries the account key.
        """
        if not isinstance(conn_str, str):
            raise TypeError(
                f"conn_str must be a str, got {type(conn_str).__name__} "
                "(value not shown because it may contain a key)"
            )
        _check_container(container)
        timeout = check_seconds("timeout", timeout)
        provision_workers = check_int("provision_workers", provision_workers, minimum=1)

        self = cls.__new__(cls)
        self._init_counters()
        client: ContainerClient | None = None
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            client = ContainerClient.from_connection_string(
                conn_str, container, **self._options(timeout)
            )
        if client is None or not _blob_endpoint_valid(conn_str):
            # Raised outside the except block so the SDK's error, which may
            # quote the string, is not chained.
            raise ValueError(
                "conn_str is not a valid storage connection string; expected "
                "'Key=value;' pairs with AccountName and AccountKey or "
                "SharedAccessSignature, and optionally BlobEndpoint "
                "(value not shown because it may contain a key)"
            ) from None
        self._setup(client, container, timeout, provision_workers)
        return self

    def _init_counters(self) -> None:
        # Guards _request_count, _blob_clients and _closed. No request is
        # sent while holding it.
        self._state_lock = threading.Lock()
        self._request_count = 0
        self._blob_clients: dict[int, BlobClient] = {}
        self._closed = False

    def _options(self, timeout: float) -> dict[str, Any]:
        return {
            "connection_timeout": timeout,
            "read_timeout": timeout,
            "retry_total": 0,
            "raw_request_hook": self._count_request,
        }

    def _setup(
        self,
        client: ContainerClient,
        container: str,
        timeout: float,
        provision_workers: int,
    ) -> None:
        self._client = client
        self._container = container
        self._timeout = timeout
        self._provision_workers = provision_workers
        container_url = _strip_query(client.primary_endpoint)
        self._container_url = container_url
        self._account_url = container_url.rsplit("/", 1)[0]

    # Properties.

    @property
    def container(self) -> str:
        """Name of the container that contains the partition blobs."""
        return self._container

    @property
    def container_url(self) -> str:
        """URL of the container, without any SAS token."""
        return self._container_url

    @property
    def request_count(self) -> int:
        """Number of requests sent to storage so far, failed ones included."""
        with self._state_lock:
            return self._request_count

    # LeaseManager methods.

    def provision(self, count: int, events: EventBus) -> None:
        """Create the container and blobs ``"0" .. "count-1"`` if missing.

        Emits ``created-container`` or ``verified-container`` (``msg`` is the
        container URL), then ``created-blob`` or ``verified-blob`` per blob
        (``val`` is its index) in index order. Every event is emitted on the
        calling thread; the blobs are created concurrently on up to
        ``provision_workers`` threads named ``batcher-provision``.
        """
        count = check_int("count", count)
        if not isinstance(events, EventBus):
            raise TypeError(f"events must be an EventBus, got {events!r}")

        created = self._create_container()
        if created:
            logger.info("created container %s", self._container_url)
            events.emit(event_names.CREATED_CONTAINER, msg=self._container_url)
        else:
            events.emit(event_names.VERIFIED_CONTAINER, msg=self._container_url)
        if count == 0:
            return

        workers = min(self._provision_workers, count)
        with ThreadPoolExecutor(
            workers, thread_name_prefix="batcher-provision"
        ) as pool:
            futures = [pool.submit(self._create_blob, index) for index in range(count)]
            try:
                for index, future in enumerate(futures):
                    name = (
                        event_names.CREATED_BLOB
                        if future.result()
                        else event_names.VERIFIED_BLOB
                    )
                    events.emit(name, val=index)
            finally:
                _cancel_all(futures)
        logger.debug("provisioned %d partitions in %s", count, self._container_url)

    def acquire(self, index: int, lease_id: str, duration: float, owner: str) -> bool:
        """Take a lease of ``duration`` seconds with ``lease_id`` and record ``owner``.

        Returns False when another lease id holds the partition. Azure accepts
        durations of 15 to 60 seconds, or -1 for a lease that never expires.
        If the lease was taken but recording the owner failed, this logs a
        warning and still returns True, because the lease is held.
        """
        index = check_int("index", index)
        _check_lease_id(lease_id)
        seconds = _check_duration(duration)
        _check_owner(owner)

        blob = self._blob_client(index)
        failure: LeaseStoreError
        try:
            BlobLeaseClient(blob, lease_id=lease_id).acquire(lease_duration=seconds)
        except AzureError as error:
            if _error_code(error) == StorageErrorCode.LEASE_ALREADY_PRESENT:
                return False
            failure = self._translate(error, "acquire lease", index)
        else:
            self._record_owner(blob, index, lease_id, owner)
            return True
        raise failure from None

    def renew(self, index: int, lease_id: str, duration: float) -> bool:
        """Extend the lease held with ``lease_id``; False if it was lost.

        Azure renews for the duration given when the lease was acquired, so
        ``duration`` is only checked against Azure's limits.
        """
        index = check_int("index", index)
        _check_lease_id(lease_id)
        _check_duration(duration)

        failure: LeaseStoreError
        try:
            BlobLeaseClient(self._blob_client(index), lease_id=lease_id).renew()
        except AzureError as error:
            if _error_code(error) in _LEASE_LOST_CODES:
                logger.debug("renewing partition %d found the lease lost", index)
                return False
            failure = self._translate(error, "renew lease", index)
        else:
            return True
        raise failure from None

    def release(self, index: int, lease_id: str) -> None:
        """Give up the lease held with ``lease_id``; nothing if it was already lost."""
        index = check_int("index", index)
        _check_lease_id(lease_id)

        failure: LeaseStoreError
        try:
            BlobLeaseClient(self._blob_client(index), lease_id=lease_id).release()
        except AzureError as error:
            if _error_code(error) in _LEASE_LOST_CODES:
                logger.debug("partition %d lease was already lost at release", index)
                return
            failure = self._translate(error, "release lease", index)
        else:
            return
        raise failure from None

    def break_lease(self, index: int) -> None:
        """Break the lease on partition ``index``, held by any lease id.

        The lease cannot be renewed and ends when its current term runs out
        (Azure's default break period). Nothing happens if it is not leased.
        """
        index = check_int("index", index)

        failure: LeaseStoreError
        try:
            BlobLeaseClient(self._blob_client(index)).break_lease()
        except AzureError as error:
            if (
                _error_code(error)
                == StorageErrorCode.LEASE_NOT_PRESENT_WITH_LEASE_OPERATION
            ):
                return
            failure = self._translate(error, "break lease", index)
        else:
            return
        raise failure from None

    def partitions(self, count: int) -> list[PartitionState]:
        """Return the state of partitions ``0 .. count-1`` from one list request.

        Lease states map as follows: ``leased`` is leased, ``breaking`` is
        leased and breaking, and ``available``, ``expired`` and ``broken`` are
        not leased. ``owner`` comes from the metadata of leased blobs only,
        since a free blob keeps the name of its last holder. A missing blob is
        not leased.
        """
        count = check_int("count", count)

        failure: LeaseStoreError
        states: dict[int, PartitionState] = {}
        try:
            for blob in self._client.list_blobs(include=["metadata"]):
                index = _partition_index(blob.name)
                if index is None or index >= count:
                    continue
                state = blob.lease.state
                leased = state in _HELD_LEASE_STATES
                owner = (
                    (blob.metadata or {}).get(OWNER_METADATA_KEY) if leased else None
                )
                states[index] = PartitionState(
                    index, leased, state == "breaking", owner
                )
        except AzureError as error:
            failure = self._translate(error, "list blobs", None)
        else:
            return [
                states.get(index, PartitionState(index, False, False, None))
                for index in range(count)
            ]
        raise failure from None

    def close(self) -> None:
        """Close the HTTP connections; the manager is not used afterwards."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._client.close()

    def __repr__(self) -> str:
        return (
            f"AzureBlobLeaseManager(account_url={self._account_url!r}, "
            f"container={self._container!r})"
        )

    # Internals.

    def _translate(
        self, error: AzureError, operation: str, index: int | None
    ) -> LeaseStoreError:
        return _translate(error, operation, self._container, index)

    def _count_request(self, request: PipelineRequest[Any]) -> None:
        with self._state_lock:
            self._request_count += 1

    def _blob_client(self, index: int) -> BlobClient:
        with self._state_lock:
            blob = self._blob_clients.get(index)
        if blob is None:
            # Two threads may build a client for the same index; either works.
            blob = self._client.get_blob_client(str(index))
            with self._state_lock:
                blob = self._blob_clients.setdefault(index, blob)
        return blob

    def _create_container(self) -> bool:
        """Create the container; False if it already exists."""
        failure: LeaseStoreError
        try:
            self._client.create_container()
        except AzureError as error:
            if _error_code(error) == StorageErrorCode.CONTAINER_ALREADY_EXISTS:
                return False
            failure = self._translate(error, "create container", None)
        else:
            return True
        if failure.status_code == 403:
            # A container SAS may not create its container but may list it,
            # which proves that the container exists.
            listed = self._list_one_page()
            if listed is None:
                return False
            if listed == StorageErrorCode.CONTAINER_NOT_FOUND:
                failure = LeaseStoreError(
                    f"{failure}; the container does not exist and the credential "
                    "may not create it (a container SAS cannot), so create it first",
                    status_code=failure.status_code,
                    error_code=failure.error_code,
                )
        raise failure from None

    def _list_one_page(self) -> str | None:
        """List one blob; return None on success, else the error code or ''."""
        try:
            pages = self._client.list_blobs(results_per_page=1).by_page()
            next(pages, None)
        except AzureError as error:
            return _error_code(error) or ""
        return None

    def _create_blob(self, index: int) -> bool:
        failure: LeaseStoreError
        try:
            # overwrite=False sends If-None-Match: *, so an existing blob,
            # its lease and its metadata stay as they are.
            self._blob_client(index).upload_blob(b"", overwrite=False)
        except AzureError as error:
            if _error_code(error) in _BLOB_EXISTS_CODES:
                return False
            failure = self._translate(error, "create blob", index)
        else:
            return True
        raise failure from None

    def _record_owner(
        self, blob: BlobClient, index: int, lease_id: str, owner: str
    ) -> None:
        try:
            blob.set_blob_metadata({OWNER_METADATA_KEY: owner}, lease=lease_id)
        except AzureError as error:
            failure = self._translate(error, "record owner", index)
            logger.warning(
                "lease on partition %d is held but the owner was not recorded: %s",
                index,
                failure,
            )


def _partition_index(name: str) -> int | None:
    if name.isdigit() and name.isascii() and str(int(name)) == name:
        return int(name)
    return None


def _cancel_all(futures: list[Future[bool]]) -> None:
    for future in futures:
        future.cancel()
