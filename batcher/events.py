"""Event names and the payload that every event bus in batcher delivers.

The names match the Go library mspnp/go-batcher so dashboards and alerts
written for it keep working. Each constant's comment states what ``val`` and
``msg`` carry for that event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ALLOCATED",
    "AUDIT_FAIL",
    "AUDIT_PASS",
    "AUDIT_SKIP",
    "BATCH",
    "CAPACITY",
    "CREATED_BLOB",
    "CREATED_CONTAINER",
    "ERROR",
    "FAILED",
    "FLUSH_DONE",
    "FLUSH_START",
    "PAUSE",
    "PROVISION_DONE",
    "PROVISION_START",
    "RELEASED",
    "REQUEST",
    "RESUME",
    "SHUTDOWN",
    "TARGET",
    "VERIFIED_BLOB",
    "VERIFIED_CONTAINER",
    "Event",
]

# Raised by a Batcher and by rate limiters.

#: Raised once when the component stops. ``val`` is the number of operations
#: returned unprocessed (Batcher) or 0.
SHUTDOWN: Final = "shutdown"
#: Something failed that the component survived. ``msg`` describes it and
#: ``metadata`` is the exception.
ERROR: Final = "error"

# Raised by a Batcher.

#: ``pause()`` started a pause. ``val`` is its length in milliseconds.
PAUSE: Final = "pause"
#: A pause ended.
RESUME: Final = "resume"
#: The audit found a non-zero target or inflight count with nothing left to
#: do and reset it. ``msg`` names which.
AUDIT_FAIL: Final = "audit-fail"
#: The audit found the target and inflight count consistent.
AUDIT_PASS: Final = "audit-pass"
#: The audit did not run because operations are buffered or a batch was
#: raised less than ``max_operation_time`` ago.
AUDIT_SKIP: Final = "audit-skip"
#: Capacity was requested of the rate limiter (``emit_request`` only).
#: ``val`` is the amount requested.
REQUEST: Final = "request"
#: A flush started (``emit_flush`` only).
FLUSH_START: Final = "flush-start"
#: A flush ended (``emit_flush`` only). ``val`` is the cost it raised.
FLUSH_DONE: Final = "flush-done"
#: A batch was raised to a watcher (``emit_batch`` only). ``val`` is the
#: number of operations and ``metadata`` the list of operations.
BATCH: Final = "batch"

# Raised by rate limiters and lease managers.

#: The capacity changed. ``val`` is the capacity now.
CAPACITY: Final = "capacity"
#: A lease attempt found the partition held by someone else, which is
#: normal. ``val`` is the partition index.
FAILED: Final = "failed"
#: A lease was given up or lost. ``val`` is the partition index.
RELEASED: Final = "released"
#: A lease was gained. ``val`` is the partition index.
ALLOCATED: Final = "allocated"
#: Capacity was requested. ``val`` is the number of partitions wanted.
TARGET: Final = "target"
#: Provisioning started. ``val`` is the number of partitions to provision.
PROVISION_START: Final = "provision-start"
#: Provisioning ended. ``val`` is the number of partitions provisioned.
PROVISION_DONE: Final = "provision-done"
#: The container was created. ``msg`` is its URL, without credentials.
CREATED_CONTAINER: Final = "created-container"
#: The container already existed. ``msg`` is its URL, without credentials.
VERIFIED_CONTAINER: Final = "verified-container"
#: A partition blob was created. ``val`` is the partition index.
CREATED_BLOB: Final = "created-blob"
#: A partition blob already existed. ``val`` is the partition index.
VERIFIED_BLOB: Final = "verified-blob"


@dataclass(frozen=True, slots=True)
class Event:
    """One event: a name from this module, an integer value, an optional
    message and optional metadata whose meaning depends on the name."""

    name: str
    val: int = 0
    msg: str | None = None
    metadata: Any = None
