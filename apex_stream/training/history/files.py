"""History files: one CSV or Parquet file with a ``type`` column, or a folder of one file per
type (the package docstring describes both), read into events and written from them."""

from __future__ import annotations

import csv
import importlib
from operator import itemgetter
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from ...events import Event, to_builtins
from .rows import KINDS, LISTS, SEPARATOR, Events, HistoryError, Rows, events_of, fields

#: The name of each type's file in a folder.
FILES = {"price": "prices", "opportunity": "opportunities", "outcome": "outcomes"}
SUFFIXES = (".csv", ".parquet")
#: Every column a history file may have, in the order :func:`write_history` writes them.
COLUMNS = tuple(
    dict.fromkeys(
        ["type", "timestamp", "executed_at"]
        + [f for cls in KINDS.values() for f in cls.__struct_fields__]
    )
)


class Arrow(NamedTuple):
    """pyarrow and the modules of it that read and write history files."""

    pyarrow: ModuleType
    csv: ModuleType
    parquet: ModuleType


def _arrow() -> Arrow:
    """pyarrow (the `train` extra), imported when a file is read or written."""
    try:
        return Arrow(
            *(importlib.import_module(m) for m in ("pyarrow", "pyarrow.csv", "pyarrow.parquet"))
        )
    except ImportError as exc:
        raise HistoryError(
            "reading history files needs pyarrow: pip install 'apex-stream[train]'"
        ) from exc


def read_events(path: Path) -> Events:
    """The events of a history file (a ``type`` column) or folder (one file per type)."""
    if path.is_dir():
        rows = {kind: found for kind in KINDS if (found := _folder_rows(path, kind))}
        if not rows:
            names = ", ".join(f"{FILES[k]}.csv" for k in KINDS)
            raise HistoryError(f"{path} holds none of {names} (or .parquet)")
    else:
        rows = _rows_by_type(path, _read_table(path))
    return events_of(rows)


def _select(records: list[dict[str, Any]], cls: type[Event]) -> list[dict[str, Any]]:
    columns = [f for f in fields(cls) if records and f in records[0]]
    return [{f: r[f] for f in columns} for r in records]


def _folder_rows(folder: Path, kind: str) -> Rows | None:
    found = [folder / f"{FILES[kind]}{s}" for s in SUFFIXES]
    found = [f for f in found if f.exists()]
    if len(found) > 1:
        raise HistoryError(f"{folder} holds both {found[0].name} and {found[1].name}: keep one")
    if not found:
        return None
    file = found[0]
    records = _select(_read_table(file).to_pylist(), KINDS[kind])
    word, first = _numbering(file)
    return Rows(records, f"{file.name} {word}", range(first, len(records) + first))


def _rows_by_type(path: Path, table: Any) -> dict[str, Rows]:
    if "type" not in table.column_names:
        raise HistoryError(
            f"{path} has no `type` column (price, opportunity or outcome on each row); "
            f"columns: {', '.join(table.column_names)}"
        )
    kinds = table.column("type").to_pylist()
    word, first = _numbering(path)
    records = table.to_pylist()
    out: dict[str, Rows] = {}
    for kind, cls in KINDS.items():
        at = [i for i, k in enumerate(kinds) if k == kind]
        if at:
            out[kind] = Rows(
                _select([records[i] for i in at], cls),
                f"{path.name} {word}",
                [i + first for i in at],
            )
    stray = next((i for i, k in enumerate(kinds) if k not in KINDS), None)
    if stray is not None:
        raise HistoryError(
            f"{path.name} {word} {stray + first}: `type` is {kinds[stray]!r}; use one of "
            + ", ".join(KINDS)
        )
    return out


def _numbering(path: Path) -> tuple[str, int]:
    """How a file's rows are named: a CSV's by line (its header is line 1), others from 1."""
    return ("line", 2) if path.suffix == ".csv" else ("row", 1)


def _read_table(path: Path) -> Any:
    """A CSV or Parquet file as an Arrow table. CSV cells are read as text, only empty ones as
    missing (a token may be called ``NA``), and :mod:`.rows` reads them as their columns'
    types, so that a bad cell is named with its row."""
    arrow = _arrow()
    if not path.exists():
        raise HistoryError(f"{path} does not exist")
    try:
        if path.suffix == ".parquet":
            return arrow.parquet.read_table(path)
        if path.suffix == ".csv":
            with path.open(newline="") as file:
                header = next(csv.reader(file), [])
            options = arrow.csv.ConvertOptions(
                column_types=dict.fromkeys(header, arrow.pyarrow.string()),
                null_values=[""],
                strings_can_be_null=True,
            )
            return arrow.csv.read_csv(path, convert_options=options)
    except (arrow.pyarrow.ArrowInvalid, OSError) as exc:
        raise HistoryError(f"{path}: {exc}") from None
    raise HistoryError(f"{path}: a history file is .csv or .parquet")


def write_history(path: Path, events: Events) -> None:
    """The events as one history file (``.csv`` or ``.parquet``, a ``type`` column), in time
    order: what :func:`read_events` reads back exactly."""
    arrow = _arrow()
    if path.suffix not in SUFFIXES:
        raise HistoryError(f"{path}: a history file is .csv or .parquet")
    timed: list[tuple[float, str, Event]] = [
        *((e.timestamp, "price", e) for e in events.prices),
        *((e.timestamp, "opportunity", e) for e in events.opportunities),
        *((e.executed_at, "outcome", e) for e in events.outcomes),
    ]
    timed.sort(key=itemgetter(0))
    records = [{"type": kind} | to_builtins(event) for _, kind, event in timed]
    if path.suffix == ".csv":
        for r in records:
            for name in LISTS:
                if name in r:
                    r[name] = SEPARATOR.join(r[name])
    present = {name for r in records for name in r}
    table = arrow.pyarrow.table({c: [r.get(c) for r in records] for c in COLUMNS if c in present})
    if path.suffix == ".parquet":
        arrow.parquet.write_table(table, path)
    else:
        arrow.csv.write_csv(table, path)
