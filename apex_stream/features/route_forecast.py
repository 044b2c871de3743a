"""The forecasts of each route's tokens, in the shape predictions carry them (seed 001's
``priceForecasts`` and ``volatilityForecast``): token -> {"5s": USD, ...} and token -> bps per
sqrt(s) over the next minute. Each distinct token's forecasts are read from the market state
once per batch; a token without forecasts (never quoted, or none fitted) is left out, and a
route with none gets None.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..events import Opportunity
from .forecast import HORIZONS_S
from .market import MarketState
from .opportunity import route_rows

LABELS = [f"{h:g}s" for h in HORIZONS_S]

PriceForecasts = dict[str, dict[str, float]]
#: Per opportunity: its route's price forecasts and volatility forecasts (None: none made).
RouteForecasts = tuple[list[PriceForecasts | None], list[dict[str, float] | None]]


def route_forecasts(
    opportunities: Sequence[Opportunity], market: MarketState, keys: list[str] | None = None
) -> RouteForecasts:
    """Price and volatility forecasts of every route's tokens, one entry per opportunity."""
    rows = route_rows(opportunities, market, keys)
    distinct, inverse = np.unique(rows, return_inverse=True)
    prices, vols = market.forecasts(distinct)
    token_prices: list[dict[str, float] | None] = [
        {label: p for label, p in zip(LABELS, row, strict=True) if np.isfinite(p)} or None
        for row in prices.tolist()
    ]
    token_vol = [v if np.isfinite(v) else None for v in vols.tolist()]
    # each route's distinct-token indices, padded to MAX_TOKENS: zip stops at its tokens
    per_route = [route.tolist() for route in inverse.reshape(rows.shape)]
    price_out: list[PriceForecasts | None] = []
    vol_out: list[dict[str, float] | None] = []
    for o, route in zip(opportunities, per_route, strict=True):
        tokens = list(zip(o.tokens, route, strict=False))
        p = {t: f for t, i in tokens if (f := token_prices[i]) is not None}
        v = {t: f for t, i in tokens if (f := token_vol[i]) is not None}
        price_out.append(p or None)
        vol_out.append(v or None)
    return price_out, vol_out
