"""A Flask application that writes ingested records through a Batcher.

Run it under gunicorn with several worker processes. Each worker gets its
own Batcher and SharedResource, and the leases on Azure blobs divide the
shared capacity between them::

    export INGEST_DATABASE=/tmp/ingest.sqlite3
    export AZURE_STORAGE_CONNECTION_STRING=...   # optional
    export INGEST_RESERVED_CAPACITY=50 INGEST_SHARED_CAPACITY=600 INGEST_FACTOR=100
    gunicorn --workers 3 --worker-class gthread --threads 4 \\
        'examples.flask_app:create_app()'

``examples.ingest.IngestSettings.from_environ`` lists every variable.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request

from examples.ingest import IngestService, IngestSettings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(service: IngestService | None = None) -> Flask:
    """Build the application around ``service``, or one configured from
    environment variables.

    The service starts on the first request rather than here. Gunicorn
    imports the application in each worker after the fork unless
    ``--preload`` is given, and with ``--preload`` it imports it once in
    the master before forking. Threads and leases do not survive a fork,
    so starting on the first request gives each worker its own running
    Batcher in both cases, and ``flask run`` works the same way. The
    service's ``start`` registers its ``stop`` with ``atexit``, which
    gunicorn workers run when they exit on SIGTERM or SIGQUIT, because
    they leave through ``sys.exit``.
    """
    if service is None:
        service = IngestService.from_settings(IngestSettings.from_environ())
    app = Flask(__name__)
    app.extensions["ingest"] = service

    @app.post("/ingest")
    def ingest() -> tuple[Response, int, dict[str, str]]:
        service.start()
        result = service.ingest(request.get_data())
        return jsonify(result.body), result.status, result.headers

    return app
