"""The forecasts of each route's tokens, in the shape predictions carry them (seed 001's
``priceForecasts`` and ``volatilityForecast``): token -> {"5s": USD, ...} and token -> bps per
sqrt(s) over the next minute. Each distinct token's forecasts are read from the market state
once per batch; a token without forecasts (never quoted, or none fitted) is left out, and a
route with none gets None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import islice, repeat

import numpy as np

from ..events import Opportunity
from .forecast import HORIZONS_S
from .market import MarketState

LABELS = [f"{h:g}s" for h in HORIZONS_S]

PriceForecasts = dict[str, dict[str, float]]
#: Per opportunity: its route's price forecasts and volatility forecasts (None: none made).
RouteForecasts = tuple[list[PriceForecasts | None], list[dict[str, float] | None]]


def route_forecasts(opportunities: Sequence[Opportunity], market: MarketState) -> RouteForecasts:
    """Price and volatility forecasts of every route's tokens, one entry per opportunity. A
    batch repeats routes: each distinct (chain, tokens) is built once and its dicts shared."""
    routes: dict[tuple[str, tuple[str, ...]], int] = {}
    index = [routes.setdefault((o.chain, tuple(o.tokens)), len(routes)) for o in opportunities]
    keys = [f"{chain}:{t}" for chain, tokens in routes for t in tokens]
    rows = np.fromiter(map(market.rows.get, keys, repeat(-1)), np.int64, len(keys))
    distinct, inverse = np.unique(rows, return_inverse=True)
    prices, vols = market.forecasts(distinct)
    token_prices = [
        {label: p for label, p in zip(LABELS, row, strict=True) if math.isfinite(p)} or None
        for row in prices.tolist()
    ]
    token_vol = [v if math.isfinite(v) else None for v in vols.tolist()]
    route_prices: list[PriceForecasts | None] = []
    route_vol: list[dict[str, float] | None] = []
    at = iter(inverse.tolist())
    for _, tokens in routes:
        found = list(zip(tokens, islice(at, len(tokens)), strict=True))
        p = {t: f for t, i in found if (f := token_prices[i]) is not None}
        v = {t: f for t, i in found if (f := token_vol[i]) is not None}
        route_prices.append(p or None)
        route_vol.append(v or None)
    return [route_prices[i] for i in index], [route_vol[i] for i in index]
