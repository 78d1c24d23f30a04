"""Argument checks and storage error translation for AzureBlobLeaseManager.

Storage exceptions become LeaseStoreError here and only here, so no
message or exception chain can carry an account key or SAS token.
"""

from __future__ import annotations

import math
import re
import socket
import uuid
from collections.abc import Iterator
from enum import Enum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.credentials import (
    AzureNamedKeyCredential,
    AzureSasCredential,
    SupportsTokenInfo,
    TokenCredential,
)
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import StorageErrorCode

from ._errors import LeaseStoreError

_CONTAINER_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


# Error translation. Every storage exception passes through _translate.


def _error_code(error: AzureError) -> str | None:
    # The storage SDK sets error_code on the HttpResponseError it raises, as a
    # StorageErrorCode member when it recognizes the code and a str otherwise.
    code = getattr(error, "error_code", None)
    if isinstance(code, Enum):
        return str(code.value)
    return str(code) if code else None


def _translate(
    error: AzureError, operation: str, container: str, index: int | None
) -> LeaseStoreError:
    """Build a LeaseStoreError from a storage exception, leaving out secrets.

    SDK messages can quote request URLs with their SAS token, so only the
    operation, the partition, the status code and the error code are kept.
    Callers raise the result outside their ``except`` block and ``from
    None``, so the original exception is neither the cause nor the context.
    """
    where = f"{operation} in container {container!r}"
    if operation == "create container":
        where = f"create container {container!r}"
    elif index is not None:
        where = f"{operation} on partition {index} in container {container!r}"

    if isinstance(error, HttpResponseError) and error.status_code is not None:
        raw_code = _error_code(error)
        error_code: str | None = raw_code
        if raw_code is not None:
            try:
                error_code = StorageErrorCode(raw_code)
            except ValueError:
                error_code = raw_code
        code_text = f" {raw_code}" if raw_code else ""
        return LeaseStoreError(
            f"{where} failed: storage returned HTTP {error.status_code}{code_text}",
            status_code=error.status_code,
            error_code=error_code,
        )
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return LeaseStoreError(f"{where} failed: {_describe_connection_error(error)}")
    return LeaseStoreError(f"{where} failed: {type(error).__name__}")


def _describe_connection_error(error: AzureError) -> str:
    """Name the network failure behind ``error`` from its chain of causes."""
    causes = list(_causes(error))
    # The specific causes go first because urllib3 2 derives its
    # NewConnectionError, raised for a refused connection, from
    # ConnectTimeoutError.
    descriptions: list[tuple[type[BaseException], str]] = [
        (ConnectionRefusedError, "connection refused"),
        (socket.gaierror, "host name could not be resolved"),
        (ConnectionResetError, "connection reset by the server"),
        (TimeoutError, "timed out"),
    ]
    for kind, description in descriptions:
        if any(isinstance(cause, kind) for cause in causes):
            return description
    for cause in causes:
        # requests and urllib3 name their timeout errors ...Timeout...,
        # without deriving them from the built-in TimeoutError.
        if any("Timeout" in cls.__name__ for cls in type(cause).__mro__):
            return "timed out"
    if isinstance(error, ServiceResponseError):
        return "connection failed while waiting for the response"
    return "connection failed"


def _causes(error: BaseException) -> Iterator[BaseException]:
    """Yield ``error`` and every exception linked to it, each once.

    requests and urllib3 link causes through ``__cause__``, ``__context__``,
    ``reason``, ``args`` and azure-core's ``inner_exception``.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending and len(seen) < 50:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [
            getattr(current, "inner_exception", None),
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
            *current.args,
        ]
        pending.extend(item for item in linked if isinstance(item, BaseException))


# Argument checks, run before any request.


def _check_account_url(account_url: Any) -> None:
    if not isinstance(account_url, str):
        raise TypeError(f"account_url must be a str, got {type(account_url).__name__}")
    if not _is_http_url(account_url):
        raise ValueError(
            "account_url must be an http or https URL with a host, such as "
            f"https://ACCOUNT.blob.core.windows.net, got {_strip_query(account_url)!r}"
        )


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _blob_endpoint_valid(conn_str: str) -> bool:
    """Return whether the BlobEndpoint setting, if any, is an http(s) URL.

    The SDK turns a malformed endpoint into an https URL without complaint.
    """
    for setting in conn_str.rstrip(";").split(";"):
        key, _, value = setting.partition("=")
        if key.strip().lower() == "blobendpoint":
            return _is_http_url(value)
    return True


def _strip_query(url: str) -> str:
    """Return ``url`` without its query string, fragment or user info."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")
    except ValueError:
        return "(unparseable URL)"


def _check_container(container: Any) -> None:
    if not isinstance(container, str):
        raise TypeError(f"container must be a str, got {type(container).__name__}")
    if not 3 <= len(container) <= 63 or not _CONTAINER_NAME.fullmatch(container):
        raise ValueError(
            "container must be 3 to 63 lowercase letters, digits and single "
            "hyphens, starting and ending with a letter or digit, got "
            f"{container!r}"
        )


def _check_credential(credential: Any) -> None:
    accepted = (str, AzureNamedKeyCredential, AzureSasCredential)
    if credential is None or isinstance(credential, accepted):
        return
    if isinstance(credential, TokenCredential | SupportsTokenInfo):
        return
    raise TypeError(
        "credential must be an account key or SAS token str, "
        "AzureNamedKeyCredential, AzureSasCredential, a TokenCredential or None, "
        f"got {type(credential).__name__}"
    )


def _check_lease_id(lease_id: Any) -> None:
    if not isinstance(lease_id, str):
        raise TypeError(f"lease_id must be a str, got {type(lease_id).__name__}")
    try:
        uuid.UUID(lease_id)
    except ValueError:
        raise ValueError(f"lease_id must be a GUID string, got {lease_id!r}") from None


def _check_duration(duration: Any) -> int:
    """Return ``duration`` as whole seconds if Azure accepts it for a lease."""
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise TypeError(f"duration must be a number of seconds, got {duration!r}")
    if (
        math.isfinite(duration)
        and duration == int(duration)
        and (15 <= duration <= 60 or duration == -1)
    ):
        return int(duration)
    raise ValueError(
        "duration must be a whole number of seconds from 15 to 60, or -1 for "
        f"a lease that never expires, got {duration!r}"
    )


def _check_owner(owner: Any) -> None:
    if not isinstance(owner, str):
        raise TypeError(f"owner must be a str, got {type(owner).__name__}")
    # Metadata travels as an HTTP header value.
    if not owner.isascii() or not owner.isprintable():
        raise ValueError(f"owner must be printable ASCII, got {owner!r}")
