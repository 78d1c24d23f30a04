"""Shared fixtures.

Azurite is a required part of the suite (``scripts/setup`` installs it from
npm). Tests that use it fail with the launcher's message when it is missing,
rather than being skipped.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from batcher._azurite import Azurite

if TYPE_CHECKING:
    from batcher._azure import AzureBlobLeaseManager

_container_numbers = itertools.count()


def unique_container_name(prefix: str = "test") -> str:
    """Return a valid container name unused in this session, starting with ``prefix``."""
    name = f"{prefix}-{os.getpid()}-{next(_container_numbers)}"
    if len(name) > 63:
        raise ValueError(f"container name {name!r} is longer than 63 characters")
    return name


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite shared by the whole session; use it, never stop or kill it."""
    with Azurite() as instance:
        yield instance


@pytest.fixture
def azurite_factory() -> Iterator[Callable[..., Azurite]]:
    """Callable(**Azurite options) that starts a private Azurite; closed after the test."""
    instances: list[Azurite] = []

    def start(**options: Any) -> Azurite:
        instance = Azurite(**options)
        instances.append(instance)
        return instance.start()

    yield start
    for instance in instances:
        instance.close()


@pytest.fixture
def container_name() -> str:
    """Unique valid container name for this test; the container does not exist yet."""
    return unique_container_name()


@pytest.fixture
def new_container_name() -> Callable[[], str]:
    """Callable that returns another unique valid container name on each call."""
    return unique_container_name


@pytest.fixture
def lease_manager(
    azurite: Azurite, container_name: str
) -> Iterator[AzureBlobLeaseManager]:
    """Unprovisioned AzureBlobLeaseManager on ``azurite`` and ``container_name``."""
    from batcher._azure import AzureBlobLeaseManager

    manager = AzureBlobLeaseManager.from_connection_string(
        azurite.connection_string, container_name
    )
    yield manager
    manager.close()
