"""The engine's 8 features as seed 002 defines them, mapped from the pipeline's columns: the
seed's own example vector from the opportunity it describes, the closed-route token count and the
fraction of the day."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from apex_stream.events import Opportunity
from apex_stream.features import FEATURES, MarketState, opportunity_features
from apex_stream.features.engine import ENGINE_FEATURES, engine_features

NOON = datetime(2026, 3, 5, 12, tzinfo=UTC).timestamp()


def opportunity(**changes: object) -> Opportunity:
    """Seed 002's example: $1,000 of USDC through WMATIC and back on two DEXes, $12 gross and
    $10.50 net (ratio 1.012), 350,000 gas, confidence 0.87, at noon UTC."""
    fields: dict[str, object] = {
        "opportunity_id": "op-1",
        "route_id": "route-1",
        "chain": "polygon",
        "tokens": ["USDC", "WMATIC"],
        "dexes": ["quickswap", "sushiswap"],
        "input_amount": 1000.0,
        "expected_output": 1012.0,
        "gas_estimate": 350_000.0,
        "profit_usd": 10.5,
        "confidence_score": 0.87,
        "timestamp": NOON,
    }
    fields.update(changes)
    return Opportunity(**fields)  # type: ignore[arg-type]


def engine_rows(*opportunities: Opportunity) -> np.ndarray:
    return engine_features(opportunity_features(list(opportunities), MarketState()))


def test_the_feature_order_is_seed_002s() -> None:
    assert ENGINE_FEATURES == (
        "profit_usd",
        "profit_ratio",
        "route_complexity",
        "gas_millions",
        "confidence_score",
        "time_of_day",
        "dex_count",
        "input_amount_thousands",
    )
    assert set(ENGINE_FEATURES) <= set(FEATURES)


def test_seed_002s_example_opportunity_gives_its_example_vector() -> None:
    (row,) = engine_rows(opportunity())
    assert row.dtype == np.float64
    np.testing.assert_allclose(row, [10.5, 1.012, 3, 0.35, 0.87, 0.5, 2, 1.0], rtol=1e-6)


def test_route_complexity_counts_the_closed_routes_tokens() -> None:
    """USDC → WMATIC → USDC is 3 for seed 002; the pipeline counts its 2 distinct tokens."""
    routes = [["USDC", "WMATIC"], ["USDC", "WMATIC", "WETH"], ["USDC", "WMATIC", "WETH", "DAI"]]
    ops = [
        opportunity(opportunity_id=f"op-{i}", tokens=t, dexes=["quickswap"] * len(t))
        for i, t in enumerate(routes)
    ]
    pipeline = opportunity_features(ops, MarketState())[:, FEATURES.index("route_complexity")]
    engine = engine_features(opportunity_features(ops, MarketState()))[:, 2]
    np.testing.assert_array_equal(pipeline, [2, 3, 4])
    np.testing.assert_array_equal(engine, [3, 4, 5])


@pytest.mark.parametrize(
    ("hour", "expected"), [(0.0, 0.0), (6.0, 0.25), (12.0, 0.5), (18.0, 0.75), (23.75, 0.989583)]
)
def test_time_of_day_is_the_fraction_of_the_utc_day(hour: float, expected: float) -> None:
    midnight = datetime(2026, 3, 5, tzinfo=UTC).timestamp()
    op = opportunity(timestamp=midnight + hour * 3600)
    assert opportunity_features([op], MarketState())[0, FEATURES.index("time_of_day")] == hour
    assert engine_rows(op)[0, 5] == pytest.approx(expected, abs=1e-6)


def test_the_other_six_are_the_pipelines_columns() -> None:
    X = opportunity_features(
        [opportunity(), opportunity(opportunity_id="op-2", input_amount=2500.0, profit_usd=-3.0)],
        MarketState(),
    )
    E = engine_features(X)
    for j, name in enumerate(ENGINE_FEATURES):
        if name not in ("route_complexity", "time_of_day"):
            np.testing.assert_array_equal(E[:, j], X[:, FEATURES.index(name)], err_msg=name)
