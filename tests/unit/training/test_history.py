"""A user's history, read from a file and replayed, gives the features the simulator's training
data has for the same events; a row the worker would refuse is named with its line and column."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import msgspec
import numpy as np
import pytest
from rich.console import Console

from apex_stream.features import FEATURES
from apex_stream.features.opportunity import MARKET
from apex_stream.settings import ROOT
from apex_stream.simulator import MarketSimulator
from apex_stream.training.dataset import DAY_START, Dataset, simulate_run
from apex_stream.training.history import (
    MIN_ROWS,
    Events,
    HistoryError,
    Replayed,
    read_events,
    read_history,
    replay,
    write_history,
)
from apex_stream.training.history.replay import check

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
        ("price", {"price": "NaN"}, "Object missing required field `price`"),
        ("outcome", {"success": "NULL"}, "Object missing required field `success`"),
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


def test_tokens_and_dexes_may_be_called_na_or_null_in_csv(
    market: tuple[Events, Dataset], tmp_path: Path
) -> None:
    events, _ = market
    token, dex = events.prices[0].token, events.prices[0].dex
    names = {token: "NA", dex: "NULL"}
    renamed = Events(
        [
            msgspec.structs.replace(
                p, token=names.get(p.token, p.token), dex=names.get(p.dex, p.dex)
            )
            for p in events.prices
        ],
        [
            msgspec.structs.replace(
                o,
                tokens=[names.get(t, t) for t in o.tokens],
                dexes=[names.get(d, d) for d in o.dexes],
            )
            for o in events.opportunities
        ],
        events.outcomes,
    )
    path = tmp_path / "names.csv"
    write_history(path, renamed)
    assert read_events(path) == renamed


def test_the_summary_reports_how_many_rows_meet_market_state(
    market: tuple[Events, Dataset], tmp_path: Path
) -> None:
    events, _ = market
    path = tmp_path / "history.parquet"
    write_history(path, events)
    printed = io.StringIO()
    read_history(path, console=Console(file=printed, width=500))
    covered = (replay(events).data.X[:, FEATURES.index("market_coverage")] > 0).mean()
    assert 0.9 < covered < 1.0  # the first opportunities come before some of their tokens tick
    assert f"market state for {covered:.1%} of those with an outcome" in printed.getvalue()


def refusal(events: Events, tmp_path: Path) -> str:
    path = tmp_path / "history.parquet"
    write_history(path, events)
    with pytest.raises(HistoryError) as raised:
        read_history(path)
    market = len(MARKET) - 1  # every market feature but the coverage
    message = f"no opportunity meets any market state, so its {market} market features"
    assert message in str(raised.value)
    return str(raised.value)


def test_a_history_without_price_ticks_is_refused(
    market: tuple[Events, Dataset], tmp_path: Path
) -> None:
    events, _ = market
    message = refusal(Events([], events.opportunities, events.outcomes), tmp_path)
    assert "the history has no price ticks" in message


def test_prices_naming_tokens_otherwise_than_routes_are_refused_with_examples(
    market: tuple[Events, Dataset], tmp_path: Path
) -> None:
    events, _ = market
    tokens = sorted({p.token for p in events.prices})
    address = {t: f"0x{i + 1:040x}" for i, t in enumerate(tokens)}
    prices = [msgspec.structs.replace(p, token=address[p.token]) for p in events.prices]
    message = refusal(Events(prices, events.opportunities, events.outcomes), tmp_path)
    assert "no route token has a price: the routes name " in message
    route = events.opportunities[0]
    assert f"{route.chain}:" in message and "0x0000" in message  # examples of both sides
    assert "not a tokenAddress in the prices" in message


def test_prices_naming_chains_otherwise_than_routes_are_refused_with_their_names(
    market: tuple[Events, Dataset], tmp_path: Path
) -> None:
    events, _ = market
    prices = [msgspec.structs.replace(p, chain=f"eip155:{p.chain}") for p in events.prices]
    message = refusal(Events(prices, events.opportunities, events.outcomes), tmp_path)
    chain = sorted({o.chain for o in events.opportunities})[0]
    assert f"the routes are on chains {chain}" in message and f"eip155:{chain}" in message


def test_prices_of_a_later_time_are_refused_with_both_spans(
    market: tuple[Events, Dataset], tmp_path: Path
) -> None:
    events, _ = market
    prices = [msgspec.structs.replace(p, timestamp=p.timestamp + 86_400) for p in events.prices]
    message = refusal(Events(prices, events.opportunities, events.outcomes), tmp_path)
    assert "no opportunity with an outcome comes after a price tick of its route" in message
    assert "price ticks from 2026-01-02T07:00:00+00:00" in message


def test_a_feature_never_computed_is_refused_by_name(market: tuple[Events, Dataset]) -> None:
    replayed = replay(market[0])
    data = replayed.data
    X = data.X.copy()
    X[:, FEATURES.index("gas_trend")] = np.nan
    gap = Replayed(
        Dataset(X, data.y, data.profit_usd, data.timestamp, data.truth),
        replayed.opportunities,
        replayed.unlabelled,
        replayed.orphans,
    )
    with pytest.raises(HistoryError, match="the feature gas_trend cannot be computed"):
        check(gap, market[0], "history")
