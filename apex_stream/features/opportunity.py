"""Opportunity features: one documented, versioned list shared by training and serving.

``FEATURES`` is the column order of every feature matrix; models record ``FEATURE_VERSION``
and the worker refuses a model built for another version. Market features aggregate the
state of every token on the route (worst volatility, thinnest liquidity, strongest
momentum, ...) as of the opportunity's arrival. Aggregates skip tokens without market state
(never quoted yet), which lowers ``market_coverage``; a route with none at all gets NaN market
features, which each model replaces with its training means (:func:`impute`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter

import numpy as np

from ..events import Opportunity
from .market import HORIZONS, TOKEN_FEATURES, MarketState

FEATURE_VERSION = "1.1"
MAX_TOKENS = 8

CLASSIC = (
    "profit_usd",  # quoted net profit (USD)
    "profit_ratio",  # expected_output / input_amount
    "route_complexity",  # number of tokens on the route
    "gas_millions",  # gas_estimate / 1e6
    "confidence_score",  # the scanner's confidence
    "time_of_day",  # UTC hour of the opportunity, [0, 24)
    "dex_count",  # distinct DEXes on the route
    "input_amount_thousands",  # input_amount / 1e3 (USD)
)
DERIVED = (
    "net_profit_bps",  # profit_usd / input_amount * 1e4
    "gas_share",  # gas cost / (gas cost + gross profit), gas cost = gross - net profit
    "tod_sin",  # time of day on the circle
    "tod_cos",
)
MARKET = (
    *(f"max_abs_momentum_{int(h)}s" for h in HORIZONS),  # strongest recent move on the route
    "max_volatility_ewma_bps",  # worst volatility (EWMA), bps per sqrt(s)
    "max_volatility_garch_bps",  # worst volatility (GARCH(1,1))
    "min_log_volume_ma",  # least traded token
    "max_volume_ratio",  # volume surge: 5 s rate / 5 min rate
    "max_abs_vwap_deviation",  # furthest from its 1-min VWAP
    "min_log_liquidity",  # thinnest pool depth (log USD)
    "log_liquidity_to_input",  # log(thinnest depth / input_amount)
    "min_liquidity_ratio",  # depth now / its 5-min average, worst token
    "max_age_s",  # staleness of the oldest quote on the route
    "gas_trend",  # log(gas 15 s EMA / 5 min EMA) on the chain, mean over the route's quotes
    "gas_level",  # log(gas now / 5 min EMA), same
    "market_coverage",  # share of route tokens with market state
    "max_log_turnover",  # log(volume / pool depth) per quote, 10 s mean, busiest token
)
FEATURES: tuple[str, ...] = CLASSIC + DERIVED + MARKET

_T = {name: i for i, name in enumerate(TOKEN_FEATURES)}
#: Token features whose strongest move counts (by absolute value), and which aggregate by
#: their highest value over the route (the others by their lowest: thinnest, least traded).
_ABS = [_T[f"momentum_{int(h)}s"] for h in HORIZONS] + [_T["vwap_deviation"]]
_MAX = np.isin(
    np.arange(len(TOKEN_FEATURES)),
    _ABS
    + [
        _T[f]
        for f in (
            "volatility_ewma_bps",
            "volatility_garch_bps",
            "volume_ratio",
            "age_s",
            "log_turnover",
        )
    ],
)


_NUMBERS = attrgetter(
    "profit_usd", "expected_output", "input_amount", "gas_estimate", "confidence_score", "timestamp"
)


def _fields(opportunities: Sequence[Opportunity]) -> np.ndarray:
    n = len(opportunities)
    numbers = np.array(list(map(_NUMBERS, opportunities)), np.float64).reshape(n, 6)
    tokens = np.fromiter(map(len, map(attrgetter("tokens"), opportunities)), np.float64, n)
    dexes = map(len, map(set, map(attrgetter("dexes"), opportunities)))
    return np.column_stack([numbers, tokens, np.fromiter(dexes, np.float64, n)])


def route_keys(opportunities: Sequence[Opportunity]) -> list[str]:
    """The ``chain:token`` market-state key of every token of every route, route after route."""
    return [f"{o.chain}:{t}" for o in opportunities for t in o.tokens]


def route_rows(
    opportunities: Sequence[Opportunity], market: MarketState, keys: list[str] | None = None
) -> np.ndarray:
    """(n, MAX_TOKENS) market-state rows of each route's tokens; -1 for padding or unknown."""
    keys = route_keys(opportunities) if keys is None else keys
    n = len(opportunities)
    lengths = np.fromiter(map(len, map(attrgetter("tokens"), opportunities)), np.int64, n)
    route = np.repeat(np.arange(n), lengths)
    hop = np.arange(len(keys)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = np.full((n, MAX_TOKENS), -1, dtype=np.int64)
    rows[route, hop] = np.fromiter(map(market.rows.get, keys, repeat(-1)), np.int64, len(keys))
    return rows


def gas_cost_usd(gross: np.ndarray, profit: np.ndarray) -> np.ndarray:
    """The quoted gas cost (USD): the gross margin (output minus input) less the quoted net
    profit, never below 0. One definition for the features (from the opportunity's fields) and
    the decision rule's loss (:func:`apex_stream.inference.decision.trade_values`, from the
    feature matrix, which keeps the profit, the ratio and the amount but not the gas in USD)."""
    cost: np.ndarray = np.maximum(gross - profit, 0.0)
    return cost


def opportunity_features(
    opportunities: Sequence[Opportunity],
    market: MarketState,
    keys: list[str] | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """The (n, len(FEATURES)) float32 feature matrix of a micro-batch (``keys``: its
    :func:`route_keys`, ``rows``: its :func:`route_rows`, when the caller has them already)."""
    f = _fields(opportunities)
    profit, output, amount, gas, confidence, ts, n_tokens, n_dexes = f.T
    hour = (ts % 86_400.0) / 3_600.0
    gross = output - amount
    gas_cost = gas_cost_usd(gross, profit)
    classic = [
        profit,
        output / amount,
        n_tokens,
        gas / 1e6,
        confidence,
        hour,
        n_dexes,
        amount / 1e3,
    ]
    derived = [
        profit / amount * 1e4,
        gas_cost / np.maximum(gas_cost + np.maximum(gross, 0), 1e-9),
        np.sin(2 * np.pi * hour / 24),
        np.cos(2 * np.pi * hour / 24),
    ]

    rows = route_rows(opportunities, market, keys) if rows is None else rows
    tok = market.features(rows, ts[:, None])  # (n, MAX_TOKENS, len(TOKEN_FEATURES))
    on_route = (rows >= 0)[..., None]
    known = on_route.sum(axis=1)  # (n, 1)
    # the worst value over the route's known tokens, each reduction over all columns at once
    tok[..., _ABS] = np.abs(tok[..., _ABS])
    highest = np.where(on_route, tok, -np.inf).max(axis=1)
    lowest = np.where(on_route, tok, np.inf).min(axis=1)
    mean = np.where(on_route, tok, 0.0).sum(axis=1) / np.maximum(known, 1)
    worst = np.where(_MAX, highest, lowest)
    worst[~np.isfinite(worst)] = np.nan
    mean[known[:, 0] == 0] = np.nan

    def column(name: str) -> np.ndarray:
        values: np.ndarray = worst[:, _T[name]]
        return values

    min_log_liq = column("log_liquidity")
    market_cols = [
        *(column(f"momentum_{int(h)}s") for h in HORIZONS),
        column("volatility_ewma_bps"),
        column("volatility_garch_bps"),
        column("log_volume_ma"),
        column("volume_ratio"),
        column("vwap_deviation"),
        min_log_liq,
        min_log_liq - np.log1p(amount),
        column("liquidity_ratio"),
        column("age_s"),
        mean[:, _T["gas_trend"]],
        mean[:, _T["gas_level"]],
        known[:, 0] / n_tokens,
        column("log_turnover"),
    ]
    matrix = np.column_stack([*classic, *derived, *market_cols])
    matrix[~np.isfinite(matrix)] = np.nan
    return matrix.astype(np.float32)


def impute(X: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Missing features (NaN) replaced by a model's training means."""
    missing = np.isnan(X)
    return np.where(missing, means, X) if missing.any() else X
