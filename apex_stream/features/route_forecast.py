"""The forecasts of each route's tokens, in the shape predictions carry them (seed 001's
``priceForecasts`` and ``volatilityForecast``): token -> {"5s": USD, ...} and token -> bps per
sqrt(s) over the next minute. A forecast counts from its token's last quote, so one whose time
has passed by the opportunity's timestamp is left out: a price forecast at horizon h once the
quote is more than h seconds older than the opportunity, the volatility forecast once it is
more than ``VOLATILITY_S``. A token without forecasts left (never quoted, none fitted, or all
past) is left out, and a route with none gets None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import attrgetter

import numpy as np

from ..events import Opportunity
from .forecast import HORIZONS_S
from .market import MarketState, T

LABELS = [f"{h:g}s" for h in HORIZONS_S]
#: The minute the volatility forecast covers (seed 001's), counted from the last quote.
VOLATILITY_S = 60.0

PriceForecasts = dict[str, dict[str, float]]
#: Per opportunity: its route's price forecasts and volatility forecasts (None: none made).
RouteForecasts = tuple[list[PriceForecasts | None], list[dict[str, float] | None]]


def route_forecasts(
    opportunities: Sequence[Opportunity], market: MarketState, rows: np.ndarray
) -> RouteForecasts:
    """Price and volatility forecasts of every route's tokens, one entry per opportunity;
    ``rows``: the batch's (n, MAX_TOKENS) route rows (``opportunity.route_rows``, -1 unknown).
    A batch repeats routes: each distinct (tokens, forecasts still due) is built once and its
    dicts shared."""
    n = len(opportunities)
    if not n:
        return [], []
    rows = rows[:, : max(map(len, map(attrgetter("tokens"), opportunities)))]  # no padding
    known = rows >= 0
    quoted = np.where(known, market.state[np.where(known, rows, 0), T], np.nan)
    ts = np.fromiter(map(attrgetter("timestamp"), opportunities), np.float64, n)
    age = ts[:, None] - quoted
    # per token: how many horizons have passed (0..len), and whether the volatility has too
    passed = np.searchsorted(np.asarray(HORIZONS_S), age, side="left")
    code = np.where(known, (rows * (len(HORIZONS_S) + 1) + passed) * 2 + (age > VOLATILITY_S), -1)
    first, inverse = _distinct_rows(code)
    prices, vols = market.forecasts(rows[first].ravel())
    width = rows.shape[1]
    token_prices = [list(zip(LABELS, row, strict=True)) for row in prices.tolist()]
    token_vol = vols.tolist()
    route_prices: list[PriceForecasts | None] = []
    route_vol: list[dict[str, float] | None] = []
    on_route, past, vol_due = (a[first].tolist() for a in (known, passed, age <= VOLATILITY_S))
    for k, i in enumerate(first.tolist()):
        p: PriceForecasts = {}
        v: dict[str, float] = {}
        for j, name in enumerate(opportunities[i].tokens):
            if not on_route[k][j]:
                continue
            t = k * width + j
            due = {label: f for label, f in token_prices[t][past[k][j] :] if math.isfinite(f)}
            if due:
                p[name] = due
            if vol_due[k][j] and math.isfinite(f := token_vol[t]):
                v[name] = f
        route_prices.append(p or None)
        route_vol.append(v or None)
    at = inverse.tolist()
    return [route_prices[u] for u in at], [route_vol[u] for u in at]


def _distinct_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The index of each distinct row's first occurrence and each row's distinct row: what
    ``np.unique(a, axis=0)`` gives, by a lexsort of the columns (ten times faster here)."""
    order = np.lexsort(a.T[::-1])
    ordered = a[order]
    starts = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
    inverse = np.empty(len(a), np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return order[starts], inverse
