"""Batched, idempotent writes: COPY (binary) into a temporary staging table, then one
``INSERT ... ON CONFLICT DO NOTHING`` into the real one, in one transaction. A redelivered
message meets its own unique key and adds nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from .rows import TableSpec


def write(engine: Engine, spec: TableSpec, rows: Sequence[tuple[Any, ...]]) -> int:
    """Write rows to ``spec``'s table; returns how many were new. Commits or raises."""
    if not rows:
        return 0
    columns = ", ".join(spec.column_names)
    stage = f"stage_{spec.name}"
    with engine.begin() as connection:
        cursor = connection.connection.driver_connection.cursor()
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {spec.name}) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY {stage} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(spec.types))
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {spec.name} ({columns}) SELECT {columns} FROM {stage} "
            "ON CONFLICT DO NOTHING"
        )
        return cursor.rowcount
