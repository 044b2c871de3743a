"""A history's events replayed in event time into labelled, featurised rows, and the checks
that they are fit to train on (enough rows, both labels, market state)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter

import numpy as np

from ...features import FEATURES, MarketState, opportunity_features
from ...features.opportunity import MARKET
from ..dataset import Dataset
from .rows import Events, HistoryError

#: Event time is replayed in windows this long (s): the simulator's step, and the worker's
#: price batch (``APEX_PRICES_BATCH_DELAY_MS``) that lands before the opportunities it prices.
WINDOW_S = 0.1
#: Fewer labelled opportunities than this cannot give a chronological split worth training on.
MIN_ROWS = 200
COVERAGE = FEATURES.index("market_coverage")
_TIME = attrgetter("timestamp")


@dataclass(frozen=True)
class Replayed:
    """The labelled rows of a replayed history, and what was left out."""

    data: Dataset
    opportunities: int
    #: opportunities without an outcome (dropped)
    unlabelled: int
    #: outcomes of no opportunity in the history (ignored)
    orphans: int

    @property
    def covered(self) -> float:
        """The share of labelled rows with market state for at least one route token."""
        return float((self.data.X[:, COVERAGE] > 0).mean()) if len(self.data) else 0.0

    def summary(self, source: str) -> str:
        span = ""
        if len(self.data):
            first, last = (_iso(self.data.timestamp[i]) for i in (0, -1))
            span = f" from {first} to {last}"
        return (
            f"{source}: {self.opportunities:,} opportunities{span}; {len(self.data):,} with an "
            f"outcome, {self.unlabelled:,} without (dropped); {self.orphans:,} outcomes of no "
            f"opportunity in the history (ignored); market state for {self.covered:.1%} of "
            "those with an outcome"
        )


def replay(events: Events, window: float = WINDOW_S) -> Replayed:
    """Features and labels of the history's opportunities in event-time order: time is cut into
    windows of ``window``, the market state takes every tick of a window, then the window's
    opportunities are featurised against it."""
    prices = sorted(events.prices, key=_TIME)
    opportunities = sorted(events.opportunities, key=_TIME)
    tick_window = _windows([t.timestamp for t in prices], window)
    windows = _windows([o.timestamp for o in opportunities], window)
    market = MarketState()
    parts, applied = [], 0
    starts = (
        np.flatnonzero(np.r_[True, windows[1:] != windows[:-1]]).tolist() if len(windows) else []
    )
    for lo, hi in zip(starts, [*starts[1:], len(opportunities)], strict=True):
        upto = int(np.searchsorted(tick_window, windows[lo], side="right"))
        market.update(prices[applied:upto])
        applied = max(applied, upto)
        parts.append(opportunity_features(opportunities[lo:hi], market))
    outcome = {
        o.opportunity_id: (o.success, o.realized_profit_usd)
        for o in sorted(events.outcomes, key=attrgetter("executed_at"))
    }
    ids = [o.opportunity_id for o in opportunities]
    known = np.array([i in outcome for i in ids], bool)
    labelled = [outcome[i] for i, k in zip(ids, known, strict=True) if k]
    X = np.vstack(parts) if parts else np.empty((0, len(FEATURES)), np.float32)
    stamps = np.array([o.timestamp for o in opportunities], np.float64)
    data = Dataset(
        X[known],
        np.array([s for s, _ in labelled], np.float32),
        np.array([p for _, p in labelled], np.float64),
        stamps[known],
        np.full(int(known.sum()), np.nan),
    )
    orphans = len(outcome.keys() - set(ids))
    return Replayed(data, len(ids), len(ids) - len(labelled), orphans)


def check(replayed: Replayed, events: Events, source: str) -> Dataset:
    """The replayed rows, when they can be trained on; else :class:`HistoryError` with why."""
    data = replayed.data
    if len(data) < MIN_ROWS:
        raise HistoryError(
            f"{source} has {len(data):,} opportunities with an outcome; training needs at least "
            f"{MIN_ROWS:,} (outcomes join their opportunity by `opportunity_id`)"
        )
    if data.y.all() or not data.y.any():
        raise HistoryError(f"{source}: every outcome has success={bool(data.y[0])}; need both")
    if not replayed.covered:
        raise HistoryError(
            f"{source}: no opportunity meets any market state, so its {len(MARKET) - 1} market "
            f"features would all be missing: {unmatched(events)}"
        )
    unknown = [
        name for name, gap in zip(FEATURES, np.isnan(data.X).all(axis=0), strict=True) if gap
    ]
    if unknown:
        raise HistoryError(
            f"{source}: the feature{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
            "cannot be computed for any opportunity; check the price ticks' columns"
        )
    return data


def unmatched(events: Events, shown: int = 5) -> str:
    """Why no opportunity met market state: no price ticks, chains or tokens named differently
    by the prices and the routes (with examples), or prices of another time."""
    if not events.prices:
        return "the history has no price ticks (rows of type `price`, prices file or table)"
    priced = Counter(f"{t.chain}:{t.token}" for t in events.prices)
    routed = Counter(f"{o.chain}:{t}" for o in events.opportunities for t in o.tokens)
    chains = {o.chain for o in events.opportunities}, {t.chain for t in events.prices}
    if not chains[0] & chains[1]:
        return (
            f"the routes are on chains {_some(chains[0], shown)} and the prices on "
            f"{_some(chains[1], shown)}: name each chain the same way in both"
        )
    if not routed.keys() & priced.keys():
        return (
            f"no route token has a price: the routes name {_common(routed, shown)} and the "
            f"prices {_common(priced, shown)} (chain:token); name each token the same way in "
            "both (e.g. its symbol in both, not a tokenAddress in the prices)"
        )
    ticks = [t.timestamp for t in events.prices]
    times = [o.timestamp for o in events.opportunities]
    return (
        "the prices name the routes' tokens, but no opportunity with an outcome comes after a "
        f"price tick of its route (price ticks from {_iso(min(ticks))} to {_iso(max(ticks))}, "
        f"opportunities from {_iso(min(times))} to {_iso(max(times))}); give the prices of the "
        "opportunities' time"
    )


def _some(names: set[str], shown: int) -> str:
    return ", ".join(sorted(names)[:shown]) + (", ..." if len(names) > shown else "")


def _common(names: Counter[str], shown: int) -> str:
    return ", ".join(n for n, _ in names.most_common(shown)) + (
        ", ..." if len(names) > shown else ""
    )


def _windows(stamps: Sequence[float], window: float) -> np.ndarray:
    """The window of each time: ``k`` for times in ``((k - 1) * window, k * window]``."""
    return np.ceil(np.asarray(stamps, np.float64) / window).astype(np.int64)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(float(seconds), UTC).isoformat(timespec="seconds")
