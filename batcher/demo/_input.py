"""Records for the demo to ingest: read from a CSV or JSON Lines file, or made up."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "FORMATS",
    "InputError",
    "Record",
    "format_for",
    "read_records",
    "synthetic_records",
]

#: Input formats and the file name extensions that select them.
FORMATS: Final = {"csv": (".csv",), "jsonl": (".jsonl", ".ndjson")}
#: Name of the optional column or field that sets a record's cost.
COST_FIELD: Final = "cost"


@dataclass(frozen=True, slots=True)
class Record:
    """One record to write: its id, its cost and its fields as a JSON object."""

    record_id: int
    cost: int
    data: str


class InputError(ValueError):
    """The input file is missing, unreadable or contains an invalid record."""


def format_for(path: Path, requested: str | None) -> str:
    """Return the input format: ``requested``, or the one that the extension selects.

    Raises:
        InputError: no format was requested and the extension selects none.
    """
    if requested is not None:
        return requested
    suffix = path.suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for suffixes in FORMATS.values() for s in suffixes)
    raise InputError(
        f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; "
        f"use one of {known} or pass --format"
    )


def read_records(
    path: Path, input_format: str, default_cost: int, max_cost: int
) -> list[Record]:
    """Read and validate every record of ``path`` before any is used.

    Record ids count data rows from 1. A ``cost`` column or field, where
    present and not empty, overrides ``default_cost``; it must be an integer
    from 0 to ``max_cost``.

    Raises:
        InputError: the file is missing, unreadable or empty, or a row is
            invalid; the message names the file and the line.
    """
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    rows = _csv_rows(path) if input_format == "csv" else _jsonl_rows(path)
    records: list[Record] = []
    try:
        for line, fields in rows:
            record_id = len(records) + 1
            cost = _cost_of(fields, default_cost, max_cost, path, line)
            data = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
            records.append(Record(record_id, cost, data))
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}, record {len(records) + 1}: not valid UTF-8 text ({error.reason})"
        ) from error
    except OSError as error:
        raise InputError(f"{path}: cannot read the file: {error.strerror}") from error
    if not records:
        raise InputError(f"{path}: the file has no records")
    return records


def synthetic_records(count: int, cost: int) -> list[Record]:
    """Return ``count`` made-up records of cost ``cost``, with ids from 1."""
    return [
        Record(record_id, cost, f'{{"id":{record_id},"source":"synthetic"}}')
        for record_id in range(1, count + 1)
    ]


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, fields) for each data row after the header."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as error:
            raise InputError(f"{path}, line 1: invalid CSV header: {error}") from error
        if header is None:
            return
        if len(set(header)) != len(header) or not all(header):
            raise InputError(
                f"{path}, line 1: the header must name every column once, got {header}"
            )
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise InputError(
                    f"{path}, line {reader.line_num}: invalid CSV: {error}"
                ) from error
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(
                    f"{path}, line {reader.line_num}: expected {len(header)} fields "
                    f"as in the header, got {len(row)}"
                )
            yield reader.line_num, dict(zip(header, row, strict=True))


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line."""
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(
                    f"{path}, line {line_number}: invalid JSON: {error.msg}"
                ) from error
            if not isinstance(value, dict):
                raise InputError(
                    f"{path}, line {line_number}: expected a JSON object, "
                    f"got {type(value).__name__}"
                )
            yield line_number, value


def _cost_of(
    fields: dict[str, Any], default_cost: int, max_cost: int, path: Path, line: int
) -> int:
    raw = fields.get(COST_FIELD)
    if raw is None or raw == "":
        return default_cost
    cost = _parse_cost(raw)
    if cost is None:
        raise InputError(
            f"{path}, line {line}: cost {raw!r} is not a non-negative integer"
        )
    if cost > max_cost:
        raise InputError(
            f"{path}, line {line}: cost {cost} is above {max_cost}, the capacity "
            "one instance can hold (--reserved-capacity plus --shared-capacity), "
            "so the record could never be written"
        )
    return cost


def _parse_cost(raw: object) -> int | None:
    """Return ``raw`` as a non-negative integer, or None if it is not one."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float):
        if not math.isfinite(raw) or not raw.is_integer():
            return None
        value = int(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if not text.isdigit() or not text.isascii():
            return None
        value = int(text)
    else:
        return None
    return value if value >= 0 else None
