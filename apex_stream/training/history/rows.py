"""Rows of a history (a file's or the database's) read as events, the way the worker reads a
message of its topic (:func:`~apex_stream.inputs.read_batch`: the canonical event, else the
topic's input form), so a row the worker would dead-letter is refused with the same reason,
its row number and its column."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, get_type_hints

import msgspec

from ...errors import ApexStreamError
from ...events import Event, Opportunity, Outcome, PriceTick
from ...inputs import INPUT_FORMS, read_batch, unix_seconds

#: The event of each ``type``.
KINDS: dict[str, type[Event]] = {"price": PriceTick, "opportunity": Opportunity, "outcome": Outcome}
#: How ``tokens`` and ``dexes`` are joined in a CSV cell.
SEPARATOR = "|"
LISTS = ("tokens", "dexes")
TIMES = ("timestamp", "executed_at")
_NUMBERS = frozenset(
    name
    for cls in (*KINDS.values(), *INPUT_FORMS.values())
    for name, hint in get_type_hints(cls, include_extras=True).items()
    if "float" in str(hint) and name not in TIMES
)
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
#: Cells that spell a missing value (pyarrow's and pandas' default null values): read so in
#: number, time and ``success`` columns only, where they cannot be a value; in a text column
#: (a token, a dex) they are names.
_MISSING = frozenset(
    {
        *("#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"),
        *("N/A", "NA", "NULL", "NaN", "n/a", "nan", "null", "None", "<NA>"),
    }
)

E = TypeVar("E", bound=Event)
_encode = msgspec.json.Encoder().encode


class HistoryError(ApexStreamError):
    """The history cannot be read or is unfit to train on; says which row or name and why."""


@dataclass(frozen=True)
class Events:
    """A history's events, each list in the order it was read."""

    prices: list[PriceTick]
    opportunities: list[Opportunity]
    outcomes: list[Outcome]


@dataclass(frozen=True)
class Rows:
    """Rows of one event type (field -> value, ``None`` for empty) and where each came from."""

    records: list[dict[str, Any]]
    source: str
    #: where each record is in ``source``: its line in a CSV file, else its row from 1
    numbers: Sequence[int]

    def where(self, i: int) -> str:
        return f"{self.source} {self.numbers[i]}"


def events_of(rows: dict[str, Rows]) -> Events:
    """The events of each type's rows (none where a type has no rows)."""

    def read(kind: str, cls: type[E]) -> list[E]:
        return to_events(rows[kind], cls) if kind in rows else []

    return Events(
        read("price", PriceTick), read("opportunity", Opportunity), read("outcome", Outcome)
    )


def to_events(rows: Rows, cls: type[E]) -> list[E]:
    """The rows as events of ``cls``, each read as the worker reads a message of its topic;
    raises :class:`HistoryError` naming up to five rejected rows with their reasons and
    columns."""
    payloads = [_encode(_row_json(row)) for row in rows.records]
    batch = read_batch(payloads, cls)
    if batch.rejected:
        shown = [f"{rows.where(i)}: {_columns(reason)}" for i, reason in batch.rejected[:5]]
        more = len(batch.rejected) - len(shown)
        raise HistoryError(
            f"{len(batch.rejected):,} {cls.__name__} row{'s' * (len(batch.rejected) > 1)} "
            "cannot be read (the worker would dead-letter them):\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more:,} more" if more else "")
        )
    return batch.events


def fields(cls: type[Event]) -> tuple[str, ...]:
    """The columns a row of ``cls`` is read from: its event's fields and its input form's."""
    form = INPUT_FORMS.get(cls)
    return tuple(dict.fromkeys(cls.__struct_fields__ + (form.__struct_fields__ if form else ())))


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the JSON an event of its topic would be: empty cells (and NaN numbers) left
    out, times in Unix seconds, ``tokens`` and ``dexes`` as lists, numbers and booleans written
    as text read as such (what cannot be read is passed on, for the event's own reason)."""
    out = {}
    for name, cell in row.items():
        value = _parsed(name, cell) if isinstance(cell, str) else cell
        if isinstance(value, datetime):
            value = unix_seconds(value, None)
        elif name == "success" and value in (0, 1):
            value = bool(value)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[name] = value
    return out


def _parsed(name: str, value: str) -> Any:
    """A text cell as its column's type, where it reads as one."""
    if value in _MISSING and (name in _NUMBERS or name in TIMES or name == "success"):
        return None
    try:
        if name in LISTS:
            return value.split(SEPARATOR)
        if name == "success":
            return _BOOLEANS.get(value.strip().lower(), value)
        if name in _NUMBERS:
            return float(value)
        if name in TIMES:
            try:
                return float(value)
            except ValueError:
                return datetime.fromisoformat(value)
    except ValueError:
        pass
    return value


def _columns(reason: str) -> str:
    """msgspec's JSON path of a field (`$.price`) as the column it came from."""
    return re.sub(r"at `\$\.(\w+)(\[\d+\])?`", r"in column `\1`", reason)
