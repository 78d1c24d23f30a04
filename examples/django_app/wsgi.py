"""WSGI entry point, for example ``gunicorn examples.django_app.wsgi``.

Loading the application runs ``django.setup()``, whose ``ready()`` hook
starts the ingest service in this process. Do not combine it with gunicorn's
``--preload``: the service would start in the master, and its threads and
leases would not survive the fork into the workers.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")

application = get_wsgi_application()
