"""Send work to a datastore as fast as its capacity allows, and no faster.

A Batcher buffers operations, groups them into batches per watcher and hands
each batch to the watcher's callback on a worker thread, within the capacity
that a rate limiter supplies. SharedResource shares one datastore's capacity
between processes on many machines through leases on Azure blobs.
"""

from __future__ import annotations

import logging

from . import events
from ._azure import AzureBlobLeaseManager
from ._batcher import Batcher
from ._bus import EventBus, Subscription
from ._errors import (
    BatcherError,
    BatcherStoppedError,
    BufferFullError,
    CapacityError,
    LeaseStoreError,
    LifecycleError,
    NoWatcherError,
    OperationError,
    SharedCapacityNotProvisionedError,
    TooExpensiveError,
    TooManyAttemptsError,
    WrongOrderError,
)
from ._lease import LeaseManager, PartitionState
from ._logging import log_events
from ._operation import Batch, Operation, Watcher
from ._ratelimit import ProvisionedResource, RateLimiter
from ._shared import LeaseHold, SharedResource
from .events import Event

__all__ = [
    "AzureBlobLeaseManager",
    "Batch",
    "Batcher",
    "BatcherError",
    "BatcherStoppedError",
    "BufferFullError",
    "CapacityError",
    "Event",
    "EventBus",
    "LeaseHold",
    "LeaseManager",
    "LeaseStoreError",
    "LifecycleError",
    "NoWatcherError",
    "Operation",
    "OperationError",
    "PartitionState",
    "ProvisionedResource",
    "RateLimiter",
    "SharedCapacityNotProvisionedError",
    "SharedResource",
    "Subscription",
    "TooExpensiveError",
    "TooManyAttemptsError",
    "Watcher",
    "WrongOrderError",
    "events",
    "log_events",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
