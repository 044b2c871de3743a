"""Training data from the user's own history: price ticks, opportunities and outcomes read from
a file (CSV or Parquet) or from the sink's database, featurised with the worker's feature code.

Every row is read the way the worker reads a message of its topic (:mod:`.rows`). The events
are then replayed in event time, as the simulator's training data is made
(:func:`~apex_stream.training.dataset.simulate_run`; :mod:`.replay`): time is cut into windows
of ``WINDOW_S`` (the simulator's step and the worker's price batch), the market state takes
every tick of a window, then the window's opportunities are featurised against it. An
opportunity's label is its outcome's ``success``; opportunities without an outcome are dropped
(and counted). A history in which no opportunity meets market state is refused with the likely
cause (no price ticks, or chains and tokens named differently by prices and routes).

A history file holds one event a row, its topic named in the ``type`` column (``price``,
``opportunity`` or ``outcome``) and its fields in the columns of the same names (the union of
the three events' fields; a row leaves the others empty). A folder instead holds one file per
type, named ``prices``, ``opportunities`` and ``outcomes`` (``.csv`` or ``.parquet``), without
the ``type`` column. In CSV, ``tokens`` and ``dexes`` are written ``WETH|USDC|DAI``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.console import Console
from sqlalchemy import Engine

from ..dataset import Dataset
from .database import WARMUP_S, database_events
from .files import read_events, write_history
from .replay import MIN_ROWS, WINDOW_S, Replayed, check, replay
from .rows import Events, HistoryError

__all__ = [
    "MIN_ROWS",
    "WARMUP_S",
    "WINDOW_S",
    "Events",
    "HistoryError",
    "Replayed",
    "load_database",
    "read_events",
    "read_history",
    "replay",
    "write_history",
]


def read_history(path: Path, *, console: Console | None = None) -> Dataset:
    """The labelled, featurised opportunities of a history file or folder (module docstring)."""
    return _trainable(read_events(path), f"history {path}", console)


def load_database(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    console: Console | None = None,
) -> Dataset:
    """The labelled, featurised opportunities stored by the sink with ``since <= time < until``
    (without ``since``, from the oldest stored price tick and its warm-up; all up to now
    without ``until``), replayed from the stored price ticks, opportunities and outcomes, so it
    needs no stored predictions."""
    stored = database_events(engine, since=since, until=until)
    return _trainable(stored.events, stored.source, console)


def _trainable(events: Events, source: str, console: Console | None) -> Dataset:
    replayed = replay(events)
    if console is not None:
        console.print(replayed.summary(source))
    return check(replayed, events, source)
