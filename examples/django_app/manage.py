"""Django's command-line utility for the example project.

Run it from the repository root: ``python -m examples.django_app.manage
runserver``.
"""

from __future__ import annotations

import os
import sys

from django.core.management import execute_from_command_line

from examples.django_app.ingest import apps


def serves_requests(argv: list[str]) -> bool:
    """Return whether this process will serve requests.

    Only ``runserver`` does. With autoreload on, the process started by the
    user only watches files and Django runs the server in a child process
    that it marks with ``RUN_MAIN=true``.
    """
    if argv[1:2] != ["runserver"]:
        return False
    return "--noreload" in argv or os.environ.get("RUN_MAIN") == "true"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
    if not serves_requests(sys.argv):
        # Commands such as migrate or check should not take leases.
        apps.autostart = False
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
