"""Opportunity features: the versioned column list, hand-computed classic and derived features,
market aggregates over the route's tokens with their coverage, imputation and batch shape."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from apex_stream.events import Opportunity, PriceTick
from apex_stream.features import FEATURES, MarketState, impute, opportunity_features
from apex_stream.features.market import TOKEN_FEATURES
from apex_stream.features.opportunity import CLASSIC, DERIVED, MARKET
from apex_stream.simulator import MarketSimulator

COL = {name: i for i, name in enumerate(FEATURES)}
TOK = {name: i for i, name in enumerate(TOKEN_FEATURES)}
# 2024-03-05 13:30:00 UTC
WHEN = datetime(2024, 3, 5, 13, 30, tzinfo=UTC).timestamp()


def opportunity(**changes: object) -> Opportunity:
    fields: dict[str, object] = {
        "opportunity_id": "op-1",
        "route_id": "route-1",
        "chain": "eth",
        "tokens": ["WETH", "USDC", "DAI"],
        "dexes": ["uniswap", "sushiswap", "uniswap"],
        "input_amount": 2500.0,
        "expected_output": 2540.0,
        "gas_estimate": 350_000.0,
        "profit_usd": 30.0,
        "confidence_score": 0.8,
        "timestamp": WHEN,
    }
    fields.update(changes)
    return Opportunity(**fields)  # type: ignore[arg-type]


def tick(token: str, price: float, t: float, *, chain: str = "eth", **kw: float) -> PriceTick:
    values = {"volume": 2.0, "liquidity": 1e6, "gas_price": 20.0} | kw
    return PriceTick(
        chain=chain, token=token, dex="uniswap", price=price, timestamp=WHEN + t, **values
    )


def test_feature_list_is_unique_and_matches_the_matrix() -> None:
    assert len(set(FEATURES)) == len(FEATURES)
    assert FEATURES == CLASSIC + DERIVED + MARKET
    assert FEATURES[-1] == "max_log_turnover"  # appended in 1.1
    X = opportunity_features([opportunity(), opportunity(opportunity_id="op-2")], MarketState())
    assert X.shape == (2, len(FEATURES))
    assert X.dtype == np.float32


def test_classic_and_derived_features_by_hand() -> None:
    x = opportunity_features([opportunity()], MarketState())[0]
    expected = {
        "profit_usd": 30.0,
        "profit_ratio": 2540.0 / 2500.0,
        "route_complexity": 3.0,
        "gas_millions": 0.35,
        "confidence_score": 0.8,
        "time_of_day": 13.5,
        "dex_count": 2.0,  # uniswap twice, sushiswap once
        "input_amount_thousands": 2.5,
        "net_profit_bps": 120.0,  # 30 / 2500 * 1e4
        # gross 40, net 30: gas cost 10 of 50
        "gas_share": 0.2,
        "tod_sin": math.sin(2 * math.pi * 13.5 / 24),
        "tod_cos": math.cos(2 * math.pi * 13.5 / 24),
    }
    assert list(expected) == list(CLASSIC + DERIVED)
    for name, value in expected.items():
        assert x[COL[name]] == pytest.approx(np.float32(value), rel=1e-6, abs=1e-7), name


def test_time_of_day_is_the_utc_hour_of_the_day() -> None:
    midnight = datetime(2024, 3, 6, tzinfo=UTC).timestamp()
    times = [midnight, midnight + 6 * 3600, midnight + 23 * 3600 + 59 * 60]
    X = opportunity_features(
        [opportunity(opportunity_id=f"op-{i}", timestamp=t) for i, t in enumerate(times)],
        MarketState(),
    )
    np.testing.assert_allclose(X[:, COL["time_of_day"]], [0.0, 6.0, 23 + 59 / 60], rtol=1e-6)
    np.testing.assert_allclose(
        X[:, COL["tod_cos"]], [1.0, 0.0, math.cos(2 * math.pi * 1439 / 1440)], atol=1e-6
    )


def test_gas_share_when_the_gross_profit_is_negative() -> None:
    # output below input: gross -10, net -25, so gas cost 15 and nothing gross to share with
    x = opportunity_features(
        [opportunity(expected_output=2490.0, profit_usd=-25.0)], MarketState()
    )[0]
    assert x[COL["gas_share"]] == 1.0
    assert x[COL["net_profit_bps"]] == pytest.approx(-100.0)


def test_market_features_are_nan_without_market_state() -> None:
    market = MarketState()
    market.update([tick("WETH", 3000.0, -5.0, chain="arb")])  # same token, another chain
    x = opportunity_features([opportunity()], market)[0]
    for name in MARKET:
        if name != "market_coverage":
            assert np.isnan(x[COL[name]]), name
    assert x[COL["market_coverage"]] == 0.0
    assert np.isfinite(x[: len(CLASSIC + DERIVED)]).all()


def test_one_known_token_of_three() -> None:
    market = MarketState()
    market.update([tick("WETH", 3000.0, -9.0, liquidity=4e6), tick("WETH", 3030.0, -7.0)])
    x = opportunity_features([opportunity()], market)[0]
    token = market.features(np.array([market.rows["eth:WETH"]]), np.array([WHEN]))[0]

    assert x[COL["market_coverage"]] == pytest.approx(1 / 3)
    assert x[COL["max_age_s"]] == pytest.approx(7.0)
    assert x[COL["min_log_liquidity"]] == pytest.approx(math.log1p(1e6), rel=1e-6)
    assert x[COL["log_liquidity_to_input"]] == pytest.approx(
        math.log1p(1e6) - math.log1p(2500.0), rel=1e-6
    )
    # a single token's aggregate is that token's own (absolute) value
    for h in (5, 15, 30, 60, 300):
        expected = abs(token[TOK[f"momentum_{h}s"]])
        assert x[COL[f"max_abs_momentum_{h}s"]] == pytest.approx(expected, rel=1e-6)
    assert token[TOK["momentum_5s"]] > 0  # the price went up
    assert x[COL["max_volatility_ewma_bps"]] == pytest.approx(
        token[TOK["volatility_ewma_bps"]], rel=1e-6
    )
    assert x[COL["min_liquidity_ratio"]] == pytest.approx(token[TOK["liquidity_ratio"]], rel=1e-6)


def test_two_known_tokens_take_the_worst_and_the_mean() -> None:
    market = MarketState()
    market.update(
        [
            tick("WETH", 3000.0, -10.0, liquidity=5e6, gas_price=20.0),
            tick("WETH", 2970.0, -8.0, liquidity=5e6, gas_price=30.0),
            tick("USDC", 1.0, -4.0, liquidity=2e5, gas_price=20.0),
            tick("USDC", 1.002, -2.0, liquidity=3e5, gas_price=25.0),
        ]
    )
    x = opportunity_features([opportunity()], market)[0]
    rows = np.array([market.rows["eth:WETH"], market.rows["eth:USDC"]])
    weth, usdc = market.features(rows, np.array([WHEN, WHEN]))

    assert x[COL["market_coverage"]] == pytest.approx(2 / 3)
    assert x[COL["max_age_s"]] == pytest.approx(8.0)  # WETH's last quote, 8 s old
    assert x[COL["min_log_liquidity"]] == pytest.approx(math.log1p(3e5), rel=1e-6)
    assert x[COL["max_abs_momentum_15s"]] == pytest.approx(
        max(abs(weth[TOK["momentum_15s"]]), abs(usdc[TOK["momentum_15s"]])), rel=1e-6
    )
    assert x[COL["max_volatility_ewma_bps"]] == pytest.approx(
        max(weth[TOK["volatility_ewma_bps"]], usdc[TOK["volatility_ewma_bps"]]), rel=1e-6
    )
    assert x[COL["min_liquidity_ratio"]] == pytest.approx(
        min(weth[TOK["liquidity_ratio"]], usdc[TOK["liquidity_ratio"]]), rel=1e-6
    )
    assert x[COL["gas_level"]] == pytest.approx(
        (weth[TOK["gas_level"]] + usdc[TOK["gas_level"]]) / 2, rel=1e-6
    )
    assert weth[TOK["gas_level"]] != usdc[TOK["gas_level"]]
    # the same trades on thinner pools: USDC turns over more of its depth
    assert x[COL["max_log_turnover"]] == pytest.approx(usdc[TOK["log_turnover"]], rel=1e-6)
    assert usdc[TOK["log_turnover"]] > weth[TOK["log_turnover"]]


def test_impute_replaces_only_missing_values() -> None:
    X = np.array([[1.0, np.nan, 3.0], [np.nan, 5.0, np.nan]], np.float32)
    means = np.array([10.0, 20.0, 30.0])
    before = X.copy()
    np.testing.assert_array_equal(impute(X, means), [[1.0, 20.0, 3.0], [10.0, 5.0, 30.0]])
    np.testing.assert_array_equal(X, before)  # the input is not modified

    full = np.ones((2, 3), np.float32)
    assert impute(full, means) is full


def test_batch_equals_row_by_row_on_simulated_data() -> None:
    market = MarketState()
    opportunities = []
    for step in MarketSimulator(2).run(duration=4.0):
        market.update(step.prices)
        opportunities += step.opportunities
    assert len(opportunities) > 200

    X = opportunity_features(opportunities, market)
    rows = np.vstack([opportunity_features([o], market) for o in opportunities])
    assert rows.dtype == np.float32
    np.testing.assert_allclose(X, rows, rtol=1e-6, atol=0, equal_nan=True)
    # after four simulated seconds every token on every route has been quoted
    np.testing.assert_array_equal(X[:, COL["market_coverage"]], 1.0)
    assert np.isfinite(X).all()
