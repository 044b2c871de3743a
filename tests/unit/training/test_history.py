"""A user's history, read from a file and replayed, gives the features the simulator's training
data has for the same events; a row the worker would refuse is named with its line and column."""

from __future__ import annotations

import csv
from pathlib import Path

import msgspec
import numpy as np
import pytest

from apex_stream.settings import ROOT
from apex_stream.simulator import MarketSimulator
from apex_stream.training.dataset import DAY_START, Dataset, simulate_run
from apex_stream.training.history import (
    MIN_ROWS,
    Events,
    HistoryError,
    read_events,
    read_history,
    replay,
    write_history,
)

SEED, START, OPPORTUNITIES = 5, DAY_START + 7 * 3_600, 1_500
EXAMPLE = ROOT / "examples" / "history.csv"


@pytest.fixture(scope="module")
def market() -> tuple[Events, Dataset]:
    """A simulated run's events, and the training rows the simulator makes of the same run."""
    sim = MarketSimulator(SEED, start_time=START)
    prices, opportunities, outcomes = [], [], []
    for step in sim.run(opportunities=OPPORTUNITIES):
        prices += step.prices
        opportunities += step.opportunities
        outcomes += step.outcomes
    return Events(prices, opportunities, outcomes), simulate_run(SEED, START, OPPORTUNITIES, None)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_history_file_gives_the_simulators_features_for_the_same_events(
    market: tuple[Events, Dataset], tmp_path: Path, suffix: str
) -> None:
    events, simulated = market
    path = tmp_path / f"history{suffix}"
    write_history(path, events)
    assert read_events(path) == events
    data = read_history(path)
    assert np.array_equal(data.X, simulated.X, equal_nan=True)
    assert np.array_equal(data.y, simulated.y)
    assert np.array_equal(data.profit_usd, simulated.profit_usd)
    assert np.array_equal(data.timestamp, simulated.timestamp)
    assert np.isnan(data.truth).all()  # a user's history has no hidden truth


def test_rows_in_any_order_replay_in_event_time(market: tuple[Events, Dataset]) -> None:
    events, simulated = market
    shuffled = np.random.default_rng(0).permutation
    mixed = Events(
        *([items[i] for i in shuffled(len(items)).tolist()] for items in vars(events).values())
    )
    assert np.array_equal(replay(mixed).data.X, simulated.X, equal_nan=True)


def test_opportunities_without_an_outcome_are_dropped_and_counted(
    market: tuple[Events, Dataset],
) -> None:
    events, _ = market
    kept = events.outcomes[: len(events.outcomes) // 2]
    stray = msgspec.structs.replace(kept[0], opportunity_id="not-in-the-history")
    replayed = replay(Events(events.prices, events.opportunities, [*kept, stray]))
    assert len(replayed.data) == len(kept)
    assert replayed.opportunities == len(events.opportunities)
    assert replayed.unlabelled == len(events.opportunities) - len(kept)
    assert replayed.orphans == 1


def test_a_folder_holds_one_file_per_type(market: tuple[Events, Dataset], tmp_path: Path) -> None:
    events, simulated = market
    write_history(tmp_path / "prices.parquet", Events(events.prices, [], []))
    write_history(tmp_path / "opportunities.csv", Events([], events.opportunities, []))
    write_history(tmp_path / "outcomes.csv", Events([], [], events.outcomes))
    assert read_events(tmp_path) == events
    assert np.array_equal(read_history(tmp_path).X, simulated.X, equal_nan=True)


def test_the_shipped_example_is_a_few_thousand_rows_of_every_type() -> None:
    events = read_events(EXAMPLE)
    rows = len(events.prices) + len(events.opportunities) + len(events.outcomes)
    assert 2_000 <= rows <= 10_000
    assert min(map(len, vars(events).values())) >= 1_000
    data = read_history(EXAMPLE)
    assert len(data) >= 5 * MIN_ROWS and 0.2 < data.y.mean() < 0.8


def rewrite(path: Path, line: int, **cells: str) -> Path:
    """The example's header and its first ``line`` lines with ``cells`` changed in the last."""
    with EXAMPLE.open(newline="") as file:
        rows = list(csv.DictReader(file))[: line - 1]
    rows[-1] |= cells
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def first_line(kind: str) -> int:
    with EXAMPLE.open(newline="") as file:
        return next(i for i, row in enumerate(csv.DictReader(file), 2) if row["type"] == kind)


@pytest.mark.parametrize(
    ("kind", "cells", "reason"),
    [
        ("price", {"price": "-5"}, "Expected `float` > 0.0 - in column `price`"),
        ("price", {"price": "abc"}, "Expected `float`, got `str` - in column `price`"),
        ("price", {"price": ""}, "Object missing required field `price`"),
        ("price", {"timestamp": "2019-12-31T23:00:00Z"}, "is before 2020-01-01"),
        ("opportunity", {"dexes": "curve|uniswap_v3|balancer"}, "route has 2 tokens but 3 dexes"),
        ("outcome", {"success": "maybe"}, "Expected `bool`, got `str` - in column `success`"),
        ("outcome", {"type": "trade"}, "`type` is 'trade'; use one of price, opportunity"),
    ],
)
def test_a_malformed_row_is_named_with_its_line_and_column(
    tmp_path: Path, kind: str, cells: dict[str, str], reason: str
) -> None:
    line = first_line(kind)
    path = rewrite(tmp_path / "bad.csv", line, **cells)
    with pytest.raises(HistoryError) as raised:
        read_events(path)
    assert f"bad.csv line {line}: " in str(raised.value)
    assert reason in str(raised.value)


def test_times_may_be_iso_and_routes_closed_as_scanners_write_them(tmp_path: Path) -> None:
    line = first_line("opportunity")
    plain = read_events(rewrite(tmp_path / "plain.csv", line)).opportunities[-1]
    tokens = plain.tokens + plain.tokens[:1]
    path = rewrite(
        tmp_path / "scanner.csv",
        line,
        timestamp="2026-01-01T12:00:30.25+00:00",
        tokens="|".join(tokens),
    )
    read = read_events(path).opportunities[-1]
    assert read == msgspec.structs.replace(plain, timestamp=1_767_268_830.25)


def test_a_history_too_small_to_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match=f"training needs at least {MIN_ROWS:,}"):
        read_history(rewrite(tmp_path / "short.csv", 400))


def test_a_file_without_the_type_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "untyped.csv"
    path.write_text("timestamp,chain\n1767268800.5,base\n")
    with pytest.raises(HistoryError, match="has no `type` column"):
        read_events(path)
