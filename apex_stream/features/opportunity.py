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

import numpy as np

from ..events import Opportunity
from .market import HORIZONS, TOKEN_FEATURES, MarketState

FEATURE_VERSION = "1.0"
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
)
FEATURES: tuple[str, ...] = CLASSIC + DERIVED + MARKET

_T = {name: i for i, name in enumerate(TOKEN_FEATURES)}


def _fields(opportunities: Sequence[Opportunity]) -> np.ndarray:
    return np.array(
        [
            (
                o.profit_usd,
                o.expected_output,
                o.input_amount,
                o.gas_estimate,
                o.confidence_score,
                o.timestamp,
                len(o.tokens),
                len(set(o.dexes)),
            )
            for o in opportunities
        ],
        dtype=np.float64,
    ).reshape(len(opportunities), 8)


def route_rows(opportunities: Sequence[Opportunity], market: MarketState) -> np.ndarray:
    """(n, MAX_TOKENS) market-state rows of each route's tokens; -1 for padding or unknown."""
    find = market.rows.get
    rows = np.full((len(opportunities), MAX_TOKENS), -1, dtype=np.int64)
    for i, o in enumerate(opportunities):
        rows[i, : len(o.tokens)] = [find(f"{o.chain}:{t}", -1) for t in o.tokens]
    return rows


def opportunity_features(opportunities: Sequence[Opportunity], market: MarketState) -> np.ndarray:
    """The (n, len(FEATURES)) float32 feature matrix of a micro-batch."""
    f = _fields(opportunities)
    profit, output, amount, gas, confidence, ts, n_tokens, n_dexes = f.T
    hour = (ts % 86_400.0) / 3_600.0
    gross = output - amount
    gas_cost = np.maximum(gross - profit, 0.0)
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

    rows = route_rows(opportunities, market)
    tok = market.features(rows, ts[:, None])  # (n, MAX_TOKENS, len(TOKEN_FEATURES))
    on_route = rows >= 0
    coverage = on_route.sum(axis=1) / n_tokens

    def worst(name: str, how: str, transform=None) -> np.ndarray:  # noqa: ANN001
        values = tok[..., _T[name]]
        if transform is not None:
            values = transform(values)
        fill = -np.inf if how == "max" else np.inf
        reduced = getattr(np, how)(np.where(on_route, values, fill), axis=1)
        return np.where(np.isfinite(reduced), reduced, np.nan)

    def mean(name: str) -> np.ndarray:
        values = np.where(on_route, tok[..., _T[name]], 0.0)
        known = on_route.sum(axis=1)
        return np.where(known > 0, values.sum(axis=1) / np.maximum(known, 1), np.nan)

    min_log_liq = worst("log_liquidity", "min")
    market_cols = [
        *(worst(f"momentum_{int(h)}s", "max", np.abs) for h in HORIZONS),
        worst("volatility_ewma_bps", "max"),
        worst("volatility_garch_bps", "max"),
        worst("log_volume_ma", "min"),
        worst("volume_ratio", "max"),
        worst("vwap_deviation", "max", np.abs),
        min_log_liq,
        min_log_liq - np.log1p(amount),
        worst("liquidity_ratio", "min"),
        worst("age_s", "max"),
        mean("gas_trend"),
        mean("gas_level"),
        coverage,
    ]
    matrix = np.column_stack([*classic, *derived, *market_cols])
    matrix[~np.isfinite(matrix)] = np.nan
    return matrix.astype(np.float32)


def impute(X: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Missing features (NaN) replaced by a model's training means."""
    missing = np.isnan(X)
    return np.where(missing, means, X) if missing.any() else X
