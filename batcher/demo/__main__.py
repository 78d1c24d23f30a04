"""Command line of the demo: ``batcher-demo`` or ``python -m batcher.demo``.

Exit status: 0 when every record was written once within the limit, 1 when
the summary shows a problem or an instance failed, 2 for invalid options or
input, 130 after Ctrl-C and 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Final

from .._shared import MAX_PARTITIONS
from ._input import FORMATS, InputError, Record, format_for, read_records
from ._input import synthetic_records as make_synthetic_records
from ._logsetup import configure_logging
from ._run import DemoSettings, InstanceFailedError, run_demo

__all__ = ["main"]

#: Environment variable that names a storage account to use instead of Azurite.
CONNECTION_STRING_ENV: Final = "AZURE_STORAGE_CONNECTION_STRING"
#: Maximum number of instance processes the demo starts.
MAX_INSTANCES: Final = 32

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143

_CONTAINER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")

_DESCRIPTION = """\
Show batcher sharing one datastore's capacity between processes.

Starts --instances worker processes. Each has its own Batcher and
SharedResource, and they lease capacity from the same blob container. Each
writes its share of the records into one SQLite database (the datastore),
one batch per transaction. Every second a line shows, per instance, the
capacity held, the cost sent in the last second and what is buffered. At the
end a summary computed from the database reports records lost or duplicated,
the maximum cost in any 1-second window against the limit, timing each batch
by when the Batcher raised it, and utilisation.

Storage is Azurite, started on a free 127.0.0.1 port, unless
--connection-string or $AZURE_STORAGE_CONNECTION_STRING names an account.
Capacity is in cost units per second; each record costs --cost units.
"""

_EPILOG = """\
exit status: 0 if every record was written exactly once within the limit;
1 if records were lost or duplicated, the limit was exceeded or an instance
failed; 2 for invalid options or input; 130 after Ctrl-C; 143 after SIGTERM.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo with command line ``argv`` and return the exit status."""
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        settings, records = _settings_and_records(parser, options)
    except InputError as error:
        print(f"batcher-demo: error: {error}", file=sys.stderr)
        return EXIT_USAGE

    configure_logging(settings.log_level, "demo")
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run_demo(settings, records)
    except _Terminated:
        print("Terminated: the instances and storage were stopped.", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("Interrupted: the instances and storage were stopped.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InstanceFailedError as error:
        print(f"batcher-demo: error: {error}", file=sys.stderr)
        return EXIT_FAILED


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Further signals are ignored so that a second Ctrl-C cannot cut the
    # clean-up short and leave instances or Azurite running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if signum == signal.SIGTERM:
        raise _Terminated
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batcher-demo",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load = parser.add_argument_group("records")
    load.add_argument(
        "--records",
        type=int,
        default=18_000,
        metavar="N",
        help="number of made-up records to write when there is no --input "
        "(default: %(default)s)",
    )
    load.add_argument(
        "--input",
        type=Path,
        metavar="FILE",
        help="write the records of FILE instead: CSV with a header row, or JSON "
        "Lines with one object per line; a 'cost' column or field sets each "
        "record's cost",
    )
    load.add_argument(
        "--format",
        choices=sorted(FORMATS),
        help="format of --input (default: from the extension: .csv, .jsonl or .ndjson)",
    )
    load.add_argument(
        "--cost",
        type=int,
        default=10,
        metavar="UNITS",
        help="cost of each record in capacity units, unless its cost column or "
        "field sets one (default: %(default)s)",
    )

    capacity = parser.add_argument_group("capacity")
    capacity.add_argument(
        "--instances",
        type=int,
        default=3,
        metavar="N",
        help=f"worker processes to start, 1 to {MAX_INSTANCES} (default: %(default)s)",
    )
    capacity.add_argument(
        "--reserved-capacity",
        type=int,
        default=500,
        metavar="UNITS",
        help="capacity per second reserved for each instance (default: %(default)s)",
    )
    capacity.add_argument(
        "--shared-capacity",
        type=int,
        default=6_000,
        metavar="UNITS",
        help="capacity per second that the instances share through blob leases "
        "(default: %(default)s)",
    )
    capacity.add_argument(
        "--factor",
        type=int,
        default=500,
        metavar="UNITS",
        help="capacity per second of one partition, so the shared capacity is "
        "cut into shared/factor leased blobs (default: %(default)s)",
    )

    storage = parser.add_argument_group("storage")
    storage.add_argument(
        "--connection-string",
        metavar="STRING",
        help="Azure Storage connection string of the account that holds the "
        f"leases (default: ${CONNECTION_STRING_ENV}; if neither is set, Azurite "
        "is started on 127.0.0.1); prefer the variable, because other users can "
        "read command lines",
    )
    storage.add_argument(
        "--container",
        metavar="NAME",
        help="blob container for the partition leases (default: a new name per "
        "run, deleted at the end)",
    )
    storage.add_argument(
        "--database",
        type=Path,
        metavar="FILE",
        help="SQLite database file to create and keep; it must not exist "
        "(default: a temporary file, removed at the end)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="draw capacity held and cost written per instance over time into "
        "a PNG file (needs matplotlib: pip install 'batcher[demo]')",
    )
    output.add_argument(
        "--quiet",
        action="store_true",
        help="print no progress line each second, only the summary",
    )
    output.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="WARNING",
        help="level of log lines on stderr; INFO shows leases gained and "
        "released, DEBUG every flush and lease request (default: %(default)s)",
    )
    return parser


def _settings_and_records(
    parser: argparse.ArgumentParser, options: argparse.Namespace
) -> tuple[DemoSettings, list[Record]]:
    """Check every option and read every record before anything starts.

    Invalid options exit through ``parser.error`` with status 2.

    Raises:
        InputError: the input file is missing, unreadable or invalid.
    """
    _check_range(parser, "--instances", options.instances, 1, MAX_INSTANCES)
    _check_range(parser, "--records", options.records, 1)
    _check_range(parser, "--cost", options.cost, 0)
    _check_range(parser, "--reserved-capacity", options.reserved_capacity, 0)
    _check_range(parser, "--shared-capacity", options.shared_capacity, 0)
    _check_range(parser, "--factor", options.factor, 1)
    max_cost = options.reserved_capacity + min(
        options.shared_capacity, MAX_PARTITIONS * options.factor
    )
    if max_cost <= 0:
        parser.error("--reserved-capacity and --shared-capacity cannot both be 0")
    if options.cost > max_cost:
        parser.error(
            f"--cost {options.cost} is above {max_cost}, the capacity one instance "
            "can hold (--reserved-capacity plus --shared-capacity)"
        )
    if options.format is not None and options.input is None:
        parser.error("--format needs --input")

    connection_string = options.connection_string or os.environ.get(
        CONNECTION_STRING_ENV
    )
    if connection_string is not None and not connection_string.strip():
        connection_string = None
    if connection_string is not None:
        _check_connection_string(parser, connection_string)
    container = options.container
    if container is not None and not _CONTAINER_NAME.fullmatch(container):
        parser.error(
            f"--container {container!r} is not a valid container name: use 3 to 63 "
            "lowercase letters, digits and single hyphens, starting and ending with "
            "a letter or digit"
        )
    _check_new_file(parser, "--database", options.database, must_not_exist=True)
    _check_new_file(parser, "--plot", options.plot, must_not_exist=False)
    if options.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error(
                "--plot needs matplotlib; install it with pip install 'batcher[demo]'"
            )

    if options.input is not None:
        input_format = format_for(options.input, options.format)
        records = read_records(options.input, input_format, options.cost, max_cost)
    else:
        records = make_synthetic_records(options.records, options.cost)
    settings = DemoSettings(
        instances=options.instances,
        reserved_capacity=options.reserved_capacity,
        shared_capacity=options.shared_capacity,
        factor=options.factor,
        connection_string=connection_string,
        container=container or f"batcher-demo-{uuid.uuid4().hex[:12]}",
        container_generated=container is None,
        database=options.database,
        plot=options.plot,
        quiet=options.quiet,
        log_level=getattr(logging, options.log_level),
    )
    return settings, records


def _check_range(
    parser: argparse.ArgumentParser,
    option: str,
    value: int,
    minimum: int,
    maximum: int | None = None,
) -> None:
    if value < minimum or (maximum is not None and value > maximum):
        allowed = (
            f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
        )
        parser.error(f"{option} must be {allowed}, got {value}")


def _check_connection_string(
    parser: argparse.ArgumentParser, connection_string: str
) -> None:
    from .._azure import AzureBlobLeaseManager

    try:
        manager = AzureBlobLeaseManager.from_connection_string(
            connection_string, "batcher-demo-check"
        )
    except ValueError as error:
        # The message leaves the string out, because it carries a key.
        parser.error(f"invalid storage connection string: {error}")
    manager.close()


def _check_new_file(
    parser: argparse.ArgumentParser,
    option: str,
    path: Path | None,
    *,
    must_not_exist: bool,
) -> None:
    if path is None:
        return
    if must_not_exist and path.exists():
        parser.error(f"{option} {path} already exists; remove it or pick a new name")
    if path.is_dir():
        parser.error(f"{option} {path} is a folder; give a file name")
    if not path.parent.is_dir():
        parser.error(f"{option} {path}: folder {path.parent} does not exist")


if __name__ == "__main__":
    sys.exit(main())
