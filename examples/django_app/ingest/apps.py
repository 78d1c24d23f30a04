"""The ingest app's configuration, whose ``ready()`` starts the service."""

from __future__ import annotations

import logging
import threading

from django.apps import AppConfig, apps

from examples.ingest import IngestService, IngestSettings

__all__ = ["IngestAppConfig", "autostart", "get_service"]

logger = logging.getLogger(__name__)

#: Whether ``ready()`` starts the service. ``manage.py`` turns it off for
#: commands that serve no requests, such as ``migrate``.
autostart = True


class IngestAppConfig(AppConfig):
    """Starts one IngestService per process when Django is set up.

    ``ready()`` runs in every process that calls ``django.setup()``: each
    gunicorn worker (without ``--preload``), the ``runserver`` process and
    the test process. The service registers its ``stop`` with ``atexit``, so
    it drains its buffer and releases its leases when the process exits.
    """

    name = "examples.django_app.ingest"
    label = "ingest"
    default = True

    # Guards service, so concurrent ready() calls start one service.
    _start_lock = threading.Lock()
    #: The running service, or None when autostart was off.
    service: IngestService | None = None

    def ready(self) -> None:
        if not autostart:
            logger.info("ingest service not started: this command serves no requests")
            return
        with self._start_lock:
            if self.service is not None:
                return
            service = IngestService.from_settings(IngestSettings.from_environ())
            service.start()
            self.service = service


def get_service() -> IngestService | None:
    """Return the service of this process, or None if it was not started."""
    config = apps.get_app_config("ingest")
    assert isinstance(config, IngestAppConfig)
    return config.service
