"""Training data from the user's own history: price ticks, opportunities and outcomes read from
a file (CSV or Parquet) or from the sink's database, featurised exactly as the worker does.

Every row is read the way the worker reads a message of its topic (:func:`read_batch`: the
canonical event, else the topic's input form), so a row the worker would dead-letter is refused
here with the same reason, its row number and its column. The events are then replayed in event
time, as the simulator's training data is made (:func:`~.dataset.simulate_run`): time is cut
into windows of ``WINDOW_S`` (the simulator's step and the worker's price batch), the market
state takes every tick of a window, then the window's opportunities are featurised against it.
An opportunity's label is its outcome's ``success``; opportunities without an outcome are
dropped (and counted).

A history file holds one event a row, its topic named in the ``type`` column (``price``,
``opportunity`` or ``outcome``) and its fields in the columns of the same names (the union of
the three events' fields; a row leaves the others empty). A folder instead holds one file per
type, named ``prices``, ``opportunities`` and ``outcomes`` (``.csv`` or ``.parquet``), without
the ``type`` column. In CSV, ``tokens`` and ``dexes`` are written ``WETH|USDC|DAI``.
"""

from __future__ import annotations

import csv as stdlib_csv
import importlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, get_type_hints

import msgspec
import numpy as np
from rich.console import Console
from sqlalchemy import Engine, text

from ..errors import ApexStreamError
from ..events import Event, Opportunity, Outcome, PriceTick, to_builtins
from ..features import FEATURES, MarketState, opportunity_features
from ..inputs import INPUT_FORMS, read_batch
from .dataset import Dataset

#: Event time is replayed in windows this long (s): the simulator's step, and the worker's
#: price batch (``APEX_PRICES_BATCH_DELAY_MS``) that lands before the opportunities it prices.
WINDOW_S = 0.1
#: Price ticks loaded from the database before the first opportunity (s): every decayed
#: statistic of the market state (the slowest has a 300 s time constant) has warmed up.
WARMUP_S = 1_800.0
#: Fewer labelled opportunities than this cannot give a chronological split worth training on.
MIN_ROWS = 200
#: How ``tokens`` and ``dexes`` are joined in a CSV cell.
SEPARATOR = "|"
#: The event of each ``type``, and the name of its file in a folder.
KINDS: dict[str, type[Event]] = {"price": PriceTick, "opportunity": Opportunity, "outcome": Outcome}
FILES = {"price": "prices", "opportunity": "opportunities", "outcome": "outcomes"}
SUFFIXES = (".csv", ".parquet")
#: Every column a history file may have, in the order :func:`write_history` writes them.
COLUMNS = tuple(
    dict.fromkeys(
        ["type", "timestamp", "executed_at"]
        + [f for cls in KINDS.values() for f in cls.__struct_fields__]
    )
)
_LISTS = ("tokens", "dexes")
_TIMES = ("timestamp", "executed_at")
_NUMBERS = frozenset(
    name
    for cls in (*KINDS.values(), *INPUT_FORMS.values())
    for name, hint in get_type_hints(cls, include_extras=True).items()
    if "float" in str(hint) and name not in _TIMES
)

E = TypeVar("E", bound=Event)
_TIME = attrgetter("timestamp")


class HistoryError(ApexStreamError):
    """The history cannot be read or is too small to train on; says which row and why."""


@dataclass(frozen=True)
class Events:
    """A history's events, each list in the order it was read."""

    prices: list[PriceTick]
    opportunities: list[Opportunity]
    outcomes: list[Outcome]


@dataclass(frozen=True)
class Replayed:
    """The labelled rows of a replayed history, and what was left out."""

    data: Dataset
    opportunities: int
    #: opportunities without an outcome (dropped)
    unlabelled: int
    #: outcomes of no opportunity in the history (ignored)
    orphans: int

    def summary(self, source: str) -> str:
        span = ""
        if len(self.data):
            first, last = (_iso(self.data.timestamp[i]) for i in (0, -1))
            span = f" from {first} to {last}"
        return (
            f"{source}: {self.opportunities:,} opportunities{span}; {len(self.data):,} with an "
            f"outcome, {self.unlabelled:,} without (dropped); {self.orphans:,} outcomes of no "
            "opportunity in the history (ignored)"
        )


def read_history(path: Path, *, console: Console | None = None) -> Dataset:
    """The labelled, featurised opportunities of a history file or folder (module docstring)."""
    replayed = replay(read_events(path))
    return _checked(replayed, f"history {path}", console)


def load_database(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    console: Console | None = None,
) -> Dataset:
    """The labelled, featurised opportunities stored by the sink with ``since <= time < until``
    (all when not given), replayed from the stored price ticks, opportunities and outcomes, so
    it needs no stored predictions."""
    replayed = replay(database_events(engine, since=since, until=until))
    return _checked(replayed, "the database", console)


def _checked(replayed: Replayed, source: str, console: Console | None) -> Dataset:
    if console is not None:
        console.print(replayed.summary(source))
    data = replayed.data
    if len(data) < MIN_ROWS:
        raise HistoryError(
            f"{source} has {len(data):,} opportunities with an outcome; training needs at least "
            f"{MIN_ROWS:,} (outcomes join their opportunity by `opportunity_id`)"
        )
    if data.y.all() or not data.y.any():
        raise HistoryError(f"{source}: every outcome has success={bool(data.y[0])}; need both")
    return data


# -- replay ---------------------------------------------------------------------------------------


def replay(events: Events, window: float = WINDOW_S) -> Replayed:
    """Features and labels of the history's opportunities in event-time order (the module
    docstring says how the market state is replayed)."""
    prices = sorted(events.prices, key=_TIME)
    opportunities = sorted(events.opportunities, key=_TIME)
    tick_window = _windows([t.timestamp for t in prices], window)
    windows = _windows([o.timestamp for o in opportunities], window)
    market = MarketState()
    parts, applied = [], 0
    starts = (
        np.flatnonzero(np.r_[True, windows[1:] != windows[:-1]]).tolist() if len(windows) else []
    )
    for lo, hi in zip(starts, [*starts[1:], len(opportunities)], strict=True):
        upto = int(np.searchsorted(tick_window, windows[lo], side="right"))
        market.update(prices[applied:upto])
        applied = max(applied, upto)
        parts.append(opportunity_features(opportunities[lo:hi], market))
    outcome = {
        o.opportunity_id: (o.success, o.realized_profit_usd)
        for o in sorted(events.outcomes, key=attrgetter("executed_at"))
    }
    ids = [o.opportunity_id for o in opportunities]
    known = np.array([i in outcome for i in ids], bool)
    labelled = [outcome[i] for i, k in zip(ids, known, strict=True) if k]
    X = np.vstack(parts) if parts else np.empty((0, len(FEATURES)), np.float32)
    stamps = np.array([o.timestamp for o in opportunities], np.float64)
    data = Dataset(
        X[known],
        np.array([s for s, _ in labelled], np.float32),
        np.array([p for _, p in labelled], np.float64),
        stamps[known],
        np.full(int(known.sum()), np.nan),
    )
    orphans = len(outcome.keys() - set(ids))
    return Replayed(data, len(ids), len(ids) - len(labelled), orphans)


def _windows(stamps: Sequence[float], window: float) -> np.ndarray:
    """The window of each time: ``k`` for times in ``((k - 1) * window, k * window]``."""
    return np.ceil(np.asarray(stamps, np.float64) / window).astype(np.int64)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(float(seconds), UTC).isoformat(timespec="seconds")


# -- rows to events -------------------------------------------------------------------------------

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Rows:
    """Rows of one event type (field -> value, ``None`` for empty) and where each came from."""

    records: list[dict[str, Any]]
    source: str
    #: where each record is in ``source``: its line in a CSV file, else its row from 1
    numbers: Sequence[int]

    def where(self, i: int) -> str:
        return f"{self.source} {self.numbers[i]}"


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


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the JSON an event of its topic would be: empty cells left out, times in Unix
    seconds, ``tokens`` and ``dexes`` as lists, numbers and booleans written as text read as
    such (what cannot be read is passed on, for the event's own reason)."""
    out = {}
    for name, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, datetime):
            value = _seconds(value)
        elif name == "success" and value in (0, 1):
            value = bool(value)
        elif isinstance(value, str):
            value = _parsed(name, value)
        out[name] = value
    return out


_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def _parsed(name: str, value: str) -> Any:
    """A text cell as its column's type, where it reads as one."""
    try:
        if name in _LISTS:
            return value.split(SEPARATOR)
        if name == "success":
            return _BOOLEANS.get(value.strip().lower(), value)
        if name in _NUMBERS:
            return float(value)
        if name in _TIMES:
            try:
                return float(value)
            except ValueError:
                return _seconds(datetime.fromisoformat(value))
    except ValueError:
        pass
    return value


def _seconds(moment: datetime) -> float:
    """Unix seconds of a date and time, UTC unless it names an offset."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _columns(reason: str) -> str:
    """msgspec's JSON path of a field (`$.price`) as the column it came from."""
    return re.sub(r"at `\$\.(\w+)(\[\d+\])?`", r"in column `\1`", reason)


# -- files ----------------------------------------------------------------------------------------


def _arrow() -> tuple[ModuleType, ModuleType, ModuleType]:
    """pyarrow, its csv and parquet modules (the `train` extra)."""
    try:
        return tuple(  # type: ignore[return-value]
            importlib.import_module(m) for m in ("pyarrow", "pyarrow.csv", "pyarrow.parquet")
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
    return _events(rows)


def _events(rows: dict[str, Rows]) -> Events:
    def read(kind: str, cls: type[E]) -> list[E]:
        return to_events(rows[kind], cls) if kind in rows else []

    return Events(
        read("price", PriceTick), read("opportunity", Opportunity), read("outcome", Outcome)
    )


def _fields(cls: type[Event]) -> tuple[str, ...]:
    """The columns a row of ``cls`` is read from: its event's fields and its input form's."""
    form = INPUT_FORMS.get(cls)
    return tuple(dict.fromkeys(cls.__struct_fields__ + (form.__struct_fields__ if form else ())))


def _select(records: list[dict[str, Any]], cls: type[Event]) -> list[dict[str, Any]]:
    fields = [f for f in _fields(cls) if records and f in records[0]]
    return [{f: r[f] for f in fields} for r in records]


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
    """A CSV or Parquet file as an Arrow table; CSV cells as text (empty ones missing), which
    :func:`_row_json` reads as their columns' types so that a bad cell is named with its row."""
    pa, csv, parquet = _arrow()
    if not path.exists():
        raise HistoryError(f"{path} does not exist")
    try:
        if path.suffix == ".parquet":
            return parquet.read_table(path)
        if path.suffix == ".csv":
            with path.open(newline="") as file:
                header = next(stdlib_csv.reader(file), [])
            options = csv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True
            )
            return csv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, OSError) as exc:
        raise HistoryError(f"{path}: {exc}") from None
    raise HistoryError(f"{path}: a history file is .csv or .parquet")


def write_history(path: Path, events: Events) -> None:
    """The events as one history file (``.csv`` or ``.parquet``, a ``type`` column), in time
    order: what :func:`read_events` reads back exactly."""
    pa, csv, parquet = _arrow()
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
            for name in _LISTS:
                if name in r:
                    r[name] = SEPARATOR.join(r[name])
    present = {name for r in records for name in r}
    table = pa.table({c: [r.get(c) for r in records] for c in COLUMNS if c in present})
    if path.suffix == ".parquet":
        parquet.write_table(table, path)
    else:
        csv.write_csv(table, path)


# -- the database ---------------------------------------------------------------------------------

_SPAN = "time >= :since AND time < :until"
PRICES_SQL = text(
    "SELECT extract(epoch FROM time)::float8 AS timestamp, chain, token, dex, price, volume, "
    "liquidity, gas_price FROM price_ticks WHERE time >= :warm AND time < :until "
    "ORDER BY time, kafka_partition, kafka_offset"
)
OPPORTUNITIES_SQL = text(
    "SELECT extract(epoch FROM time)::float8 AS timestamp, opportunity_id, route_id, chain, "
    "tokens, dexes, input_amount, expected_output, gas_estimate, profit_usd, confidence_score "
    f"FROM opportunities WHERE {_SPAN} ORDER BY time"
)
OUTCOMES_SQL = text(
    "SELECT extract(epoch FROM time)::float8 AS executed_at, opportunity_id, route_id, chain, "
    "success, realized_profit_usd, gas_used, gas_cost_usd FROM outcomes WHERE opportunity_id IN "
    f"(SELECT opportunity_id FROM opportunities WHERE {_SPAN}) ORDER BY time"
)


def database_events(
    engine: Engine, *, since: datetime | None = None, until: datetime | None = None
) -> Events:
    """The stored opportunities with ``since <= time < until``, their outcomes, and the price
    ticks from ``WARMUP_S`` before ``since``."""
    start = since or datetime.fromtimestamp(0, UTC)
    end = until or datetime(9999, 1, 1, tzinfo=UTC)
    warm = datetime.fromtimestamp(max(start.timestamp() - WARMUP_S, 0), UTC)
    params = {"since": start, "until": end, "warm": warm}
    with engine.connect() as connection:
        rows = {}
        for kind, sql in (
            ("price", PRICES_SQL),
            ("opportunity", OPPORTUNITIES_SQL),
            ("outcome", OUTCOMES_SQL),
        ):
            records = [dict(r._mapping) for r in connection.execute(sql, params)]
            rows[kind] = Rows(records, f"stored {FILES[kind]} row", range(1, len(records) + 1))
    return _events(rows)
