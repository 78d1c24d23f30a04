"""Tests for the demo: its input checks, its summary arithmetic, and whole runs.

The whole runs start ``python -m batcher.demo`` as a subprocess with small
settings (2 instances, a few seconds of work) against Azurite.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from batcher._azurite import ACCOUNT_KEY, Azurite
from batcher.demo._datastore import (
    RunSettings,
    Writer,
    create_database,
    load_input,
    mark_time,
)
from batcher.demo._input import InputError, Record, read_records, synthetic_records
from batcher.demo._summary import (
    WindowBatch,
    first_full_capacity,
    max_window_cost,
    read_summary,
    saturated_utilisation,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

# 2 instances, limit 150 x 2 + 600 = 900 cost/s; 600 records of cost 10 are
# about 6.7 s of work at the limit.
SMALL_RUN = [
    "--instances",
    "2",
    "--reserved-capacity",
    "150",
    "--shared-capacity",
    "600",
    "--factor",
    "150",
    "--cost",
    "10",
]
SMALL_RUN_LIMIT = 900
RUN_TIMEOUT = 120.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_demo(
    args: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the demo as a subprocess and return its exit status and output."""
    environment = dict(os.environ)
    environment.pop("AZURE_STORAGE_CONNECTION_STRING", None)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "batcher.demo", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def summary_value(stdout: str, label: str) -> str:
    """Return the text after ``label`` on its summary line."""
    match = re.search(rf"^  {re.escape(label)} +(.*)$", stdout, re.MULTILINE)
    assert match is not None, f"no summary line {label!r} in:\n{stdout}"
    return match.group(1)


def check_run_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    """Assert that a whole run wrote every record once within the limit.

    The limit is checked by the time the Batcher raised each batch, the time
    that its pacing applies to.
    """
    output = result.stdout + result.stderr
    assert summary_value(result.stdout, "records lost") == "0", output
    assert summary_value(result.stdout, "records duplicated") == "0", output
    limit = int(summary_value(result.stdout, "limit").split()[0])
    max_raised = int(summary_value(result.stdout, "max cost in 1 s").split()[0])
    assert max_raised <= limit, output
    assert result.returncode == 0, output
    assert summary_value(result.stdout, "result").startswith("OK"), output


def check_limit_held(database: Path, limit: int) -> None:
    """Assert from the rows alone that no 1-second window by raise time exceeds
    ``limit``, and that each row's times come in order."""
    connection = sqlite3.connect(database)
    try:
        batches: list[tuple[float, int]] = connection.execute(
            "SELECT raised_at, SUM(cost) FROM writes GROUP BY instance, raised_at "
            "ORDER BY raised_at"
        ).fetchall()
        (out_of_order,) = connection.execute(
            "SELECT COUNT(*) FROM writes WHERE NOT "
            "(raised_at <= handed_at AND handed_at <= committed_at)"
        ).fetchone()
    finally:
        connection.close()
    assert max_window_cost(batches)[0] <= limit, batches
    assert out_of_order == 0


def written_rows(database: Path) -> list[tuple[int, int, int, str]]:
    connection = sqlite3.connect(database)
    try:
        rows: list[tuple[int, int, int, str]] = connection.execute(
            "SELECT record_id, instance, cost, data FROM writes ORDER BY record_id"
        ).fetchall()
    finally:
        connection.close()
    return rows


# Input checks, in process.


def test_read_records_csv_cost_column(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    path.write_text("name,cost\nalpha,3\nbeta,\n", encoding="utf-8")

    records = read_records(path, "csv", default_cost=7, max_cost=100)

    assert [r.record_id for r in records] == [1, 2]
    assert [r.cost for r in records] == [3, 7]
    assert json.loads(records[0].data) == {"name": "alpha", "cost": "3"}


def test_read_records_jsonl_cost_field(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"name": "a", "cost": 4}\n\n{"name": "b"}\n', encoding="utf-8")

    records = read_records(path, "jsonl", default_cost=9, max_cost=100)

    assert [r.cost for r in records] == [4, 9]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("costs.csv", "name,cost\na,1\nb,ten\n", "line 3: cost 'ten'"),
        ("costs.csv", "name,cost\na,-5\n", "line 2: cost '-5'"),
        ("costs.csv", "name,cost\na,1.5\n", "line 2: cost '1.5'"),
        ("costs.csv", "name,cost\na,1000\n", "line 2: cost 1000 is above 100"),
        ("fields.csv", "name,cost\na,1,extra\n", "line 2: expected 2 fields"),
        ("quote.csv", 'name,cost\n"a,1\n', "invalid CSV"),
        ("empty.csv", "", "has no records"),
        ("header.csv", "name,cost\n", "has no records"),
        ("bad.jsonl", '{"cost": 1}\n{"cost": \n', "line 2: invalid JSON"),
        ("list.jsonl", '{"cost": 1}\n[1, 2]\n', "line 2: expected a JSON object"),
        ("bool.jsonl", '{"cost": true}\n', "line 1: cost True"),
        ("float.jsonl", '{"cost": 2.5}\n', "line 1: cost 2.5"),
        ("empty.jsonl", "\n\n", "has no records"),
    ],
)
def test_read_records_rejects_invalid_input(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    input_format = "csv" if name.endswith(".csv") else "jsonl"

    with pytest.raises(InputError) as raised:
        read_records(path, input_format, default_cost=10, max_cost=100)

    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_read_records_rejects_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"name,cost\nok,1\ncaf\xe9,2\n")

    with pytest.raises(InputError, match="not valid UTF-8"):
        read_records(path, "csv", default_cost=10, max_cost=100)


def test_synthetic_records_ids_and_cost() -> None:
    records = synthetic_records(3, 12)

    assert [r.record_id for r in records] == [1, 2, 3]
    assert {r.cost for r in records} == {12}


# Summary arithmetic, in process.


def test_max_window_cost_half_open_window() -> None:
    costs = [(0.0, 5), (0.5, 5), (1.0, 5), (1.2, 5)]

    # The window (0.0, 1.0] leaves out the batch at 0.0.
    assert max_window_cost(costs) == (15, 1.2)


def test_max_window_cost_empty() -> None:
    assert max_window_cost([]) == (0, 0.0)


def test_saturated_utilisation_until_last_second_of_work() -> None:
    # Limit 10 per second, 30 in all: after the batch at 3.0 s only 5 is
    # left, less than one second's worth. By then 25 went out in 3.0 s, of
    # the 30 that the limit allowed, because no batch went out at 1.5 s.
    costs = [(0.5, 5), (1.0, 5), (2.0, 5), (2.5, 5), (3.0, 5), (3.5, 5)]

    saturated_for, utilisation = saturated_utilisation(costs, 0.0, 30, 10)

    assert saturated_for == 3.0
    assert utilisation == pytest.approx(25 / 30)


def test_saturated_utilisation_small_workload() -> None:
    assert saturated_utilisation([(0.1, 5)], 0.0, 5, 10) == (0.0, None)


def test_first_full_capacity_sums_instances() -> None:
    changes = [(0.0, 1, 100), (0.0, 2, 100), (0.4, 1, 300), (0.9, 2, 200)]

    assert first_full_capacity(changes, 500) == (0.9, 500)


def test_first_full_capacity_never_full() -> None:
    assert first_full_capacity([(0.0, 1, 100)], 500) == (None, 100)


def make_database(path: Path, limit: int, records: int, cost: int) -> None:
    """Create a one-instance database whose run started at time 0 and ended at 2."""
    create_database(path, RunSettings(1, limit, 0, 1), synthetic_records(records, cost))
    mark_time(path, "started_at", 0.0)
    mark_time(path, "finished_at", 2.0)


def write_batch(
    path: Path, records: Sequence[Record], times: tuple[float, float, float]
) -> None:
    """Write ``records`` as one batch raised, handed over and committed at ``times``."""
    raised_at, handed_at, committed_at = times
    writer = Writer(path, 1, clock=lambda: committed_at)
    try:
        writer.write(records, raised_at, handed_at)
    finally:
        writer.close()


def test_writer_stores_three_times(tmp_path: Path) -> None:
    database = tmp_path / "datastore.sqlite3"
    make_database(database, 100, 4, 10)
    records = load_input(database, 1)

    write_batch(database, records[:2], (1.0, 1.25, 1.5))
    write_batch(database, records[2:], (2.0, 2.25, 2.5))

    connection = sqlite3.connect(database)
    try:
        rows = connection.execute(
            "SELECT record_id, raised_at, handed_at, committed_at FROM writes "
            "ORDER BY record_id"
        ).fetchall()
    finally:
        connection.close()
    assert rows == [
        (1, 1.0, 1.25, 1.5),
        (2, 1.0, 1.25, 1.5),
        (3, 2.0, 2.25, 2.5),
        (4, 2.0, 2.25, 2.5),
    ]


def test_read_summary_checks_raise_time(tmp_path: Path) -> None:
    database = tmp_path / "datastore.sqlite3"
    make_database(database, 100, 4, 40)
    records = load_input(database, 1)
    # Raised 1 s apart, so no window of raise times contains both batches. The
    # callbacks started and committed 0.7 s apart, so those windows contain 160.
    write_batch(database, records[:2], (0.0, 0.5, 0.6))
    write_batch(database, records[2:], (1.0, 1.2, 1.3))

    summary = read_summary(database)

    assert summary.max_window_raised == 80
    assert summary.max_window_handed == 160
    assert summary.max_window_committed == 160
    assert not summary.limit_exceeded
    assert summary.ok
    # The first window to reach the maximum ends at the first batch.
    assert summary.max_window_batches == (WindowBatch(1, 0.0, 80),)
    lines = summary.lines()
    assert "result              OK: every record written once, within the limit" in (
        lines
    )
    assert not any(line.startswith("batches in window") for line in lines)


def test_read_summary_raise_time_over_limit_fails(tmp_path: Path) -> None:
    database = tmp_path / "datastore.sqlite3"
    make_database(database, 100, 4, 40)
    records = load_input(database, 1)
    write_batch(database, records[:2], (0.0, 0.1, 0.2))
    write_batch(database, records[2:], (0.5, 0.6, 0.7))

    summary = read_summary(database)

    assert summary.max_window_raised == 160
    assert summary.limit_exceeded
    assert not summary.ok
    assert summary.max_window_batches == (
        WindowBatch(1, 0.0, 80),
        WindowBatch(1, 0.5, 80),
    )
    lines = summary.lines()
    assert "batches in window   instance 1, raised at 0.000 s, cost 80" in lines
    assert "                    instance 1, raised at 0.500 s, cost 80" in lines
    assert lines[-1] == (
        "result              FAILED: cost 160 in one second exceeds the limit 100"
    )


# Command line checks: nothing may start or be created.


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("costs.csv", "name,cost\na,1\nb,abc\n", "line 3"),
        ("negative.csv", "name,cost\na,-1\n", "line 2"),
        ("empty.csv", "", "has no records"),
        ("rows.jsonl", '{"cost": 1}\nnot json\n', "line 2"),
    ],
)
def test_demo_bad_input_exits_2(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    database = tmp_path / "datastore.sqlite3"

    result = run_demo(["--input", str(path), "--database", str(database)])

    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr
    assert expected in result.stderr
    assert not database.exists()
    assert "Azurite" not in result.stdout


def test_demo_missing_input_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"
    database = tmp_path / "datastore.sqlite3"

    result = run_demo(["--input", str(path), "--database", str(database)])

    assert result.returncode == 2
    assert f"{path}: input file not found" in result.stderr
    assert not database.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--instances", "0"], "--instances must be 1 to 32"),
        (["--factor", "0"], "--factor must be at least 1"),
        (["--cost", "-1"], "--cost must be at least 0"),
        (["--container", "Bad_Name"], "not a valid container name"),
        (["--format", "csv"], "--format needs --input"),
        (["--connection-string", "nonsense"], "invalid storage connection string"),
    ],
)
def test_demo_invalid_options_exit_2(args: list[str], expected: str) -> None:
    result = run_demo(args)

    assert result.returncode == 2
    assert expected in result.stderr


def test_demo_existing_database_exits_2(tmp_path: Path) -> None:
    database = tmp_path / "datastore.sqlite3"
    database.write_bytes(b"earlier run")

    result = run_demo(["--database", str(database)])

    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert database.read_bytes() == b"earlier run"


# Whole runs against Azurite.


@pytest.mark.azurite
@pytest.mark.slow
def test_demo_synthetic_run_succeeds(tmp_path: Path) -> None:
    database = tmp_path / "datastore.sqlite3"

    result = run_demo([*SMALL_RUN, "--records", "600", "--database", str(database)])

    assert "Storage: Azurite, the storage emulator, started" in result.stdout
    assert re.search(r"^ +\d+s \|.* of 900$", result.stdout, re.MULTILINE)
    assert summary_value(result.stdout, "records written").startswith("600 of 600")
    assert ACCOUNT_KEY not in result.stdout + result.stderr
    rows = written_rows(database)
    assert len(rows) == 600
    assert {instance for _, instance, _, _ in rows} == {1, 2}
    check_run_succeeded(result)
    check_limit_held(database, SMALL_RUN_LIMIT)


@pytest.mark.azurite
@pytest.mark.slow
def test_demo_csv_input_with_plot(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    lines = ["order,customer,cost"]
    lines += [f"{n},customer-{n % 7},{'' if n % 3 else 20}" for n in range(1, 301)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    database = tmp_path / "datastore.sqlite3"
    plot = tmp_path / "run.png"

    result = run_demo(
        [
            *SMALL_RUN,
            "--input",
            str(path),
            "--database",
            str(database),
            "--plot",
            str(plot),
            "--quiet",
        ]
    )

    assert " | " not in result.stdout
    rows = written_rows(database)
    assert [record_id for record_id, _, _, _ in rows] == list(range(1, 301))
    costs = {record_id: cost for record_id, _, cost, _ in rows}
    assert costs[3] == 20
    assert costs[4] == 10
    assert json.loads(rows[0][3]) == {
        "order": "1",
        "customer": "customer-1",
        "cost": "",
    }
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    check_run_succeeded(result)
    check_limit_held(database, SMALL_RUN_LIMIT)


@pytest.mark.azurite
@pytest.mark.slow
def test_demo_jsonl_input_with_cost(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    objects = [{"event": n, "cost": 5 + n % 4} for n in range(1, 401)]
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    database = tmp_path / "datastore.sqlite3"

    result = run_demo(
        [*SMALL_RUN, "--input", str(path), "--database", str(database), "--quiet"]
    )

    rows = written_rows(database)
    assert len(rows) == 400
    assert sum(cost for _, _, cost, _ in rows) == sum(o["cost"] for o in objects)
    check_run_succeeded(result)
    check_limit_held(database, SMALL_RUN_LIMIT)


@pytest.mark.azurite
@pytest.mark.slow
def test_demo_connection_string_starts_no_azurite(
    azurite: Azurite, tmp_path: Path
) -> None:
    # If the demo tried to start Azurite, this setting would make it fail.
    env = {"BATCHER_AZURITE_BIN": str(tmp_path / "no-azurite-here")}
    database = tmp_path / "datastore.sqlite3"

    result = run_demo(
        [
            *SMALL_RUN,
            "--records",
            "300",
            "--quiet",
            "--database",
            str(database),
            "--connection-string",
            azurite.connection_string,
        ],
        env=env,
    )

    assert "Storage: the account that the connection string names." in result.stdout
    assert "Azurite" not in result.stdout
    assert ACCOUNT_KEY not in result.stdout + result.stderr
    match = re.search(r"container '([a-z0-9-]+)'", result.stdout)
    assert match is not None
    container = ContainerClient.from_connection_string(
        azurite.connection_string, match.group(1)
    )
    with container:
        assert not container.exists()
    check_run_succeeded(result)
    check_limit_held(database, SMALL_RUN_LIMIT)
