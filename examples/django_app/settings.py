"""Settings of the Django example project.

Only what the ingest endpoint needs: no database (the records go to the
SQLite file named by ``INGEST_DATABASE``), no sessions, no templates. The
ingest service reads its own settings from environment variables, listed
in ``examples.ingest.IngestSettings.from_environ``.
"""

from __future__ import annotations

import os

# NOTE: the fallback key is for trying the example locally; set
# DJANGO_SECRET_KEY anywhere else.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-key-for-the-example-only")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = ["examples.django_app.ingest"]
# The endpoint takes JSON from programs, not forms from browsers, so there
# is no session or CSRF middleware.
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "examples.django_app.urls"
WSGI_APPLICATION = "examples.django_app.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}

USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "batcher": {"handlers": ["console"], "level": "INFO"},
        "examples": {"handlers": ["console"], "level": "INFO"},
    },
}
