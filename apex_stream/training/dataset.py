"""Training data from the simulator, computed exactly as the worker computes it in service:
price ticks update a :class:`MarketState`, each micro-batch of opportunities is featurised
against it, and every label is the success of the opportunity's outcome."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..features import MarketState, impute, opportunity_features
from ..simulator import MarketSimulator, SimConfig


@dataclass(frozen=True)
class Dataset:
    """Rows in arrival (event-time) order, so slicing gives a chronological split."""

    X: np.ndarray
    y: np.ndarray
    profit_usd: np.ndarray  # realized profit of each outcome
    timestamp: np.ndarray
    truth: np.ndarray  # the simulator's hidden success probability

    def __len__(self) -> int:
        return len(self.y)

    def imputed(self, means: np.ndarray) -> Dataset:
        """The same rows with missing features replaced by ``means``."""
        return Dataset(impute(self.X, means), self.y, self.profit_usd, self.timestamp, self.truth)

    def slice(self, start: int, stop: int) -> Dataset:
        return Dataset(
            *(a[start:stop] for a in (self.X, self.y, self.profit_usd, self.timestamp, self.truth))
        )


def feature_bounds(X: np.ndarray) -> list[list[float]]:
    """Each feature's lowest and highest value in the (imputed) training rows, which the worker
    clips that model's inputs to (``inference.ensemble.Arms.inputs``)."""
    return [np.nanmin(X, axis=0).tolist(), np.nanmax(X, axis=0).tolist()]


#: Simulated history comes in segments spread over one day, so time-of-day features cover
#: every hour (the ground truth ignores the hour; a model must see that, not extrapolate).
SEGMENTS = 8
DAY_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def simulate(seed: int, opportunities: int, config: SimConfig | None = None) -> Dataset:
    """Features and outcome labels of ``opportunities`` simulated opportunities in
    chronological order (those whose outcome has not landed when a segment ends are dropped)."""
    per_segment = -(-opportunities // SEGMENTS)
    parts = [
        simulate_run(seed * SEGMENTS + k, DAY_START + k * 86_400 / SEGMENTS, per_segment, config)
        for k in range(SEGMENTS)
    ]
    return Dataset(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("X", "y", "profit_usd", "timestamp", "truth")
        )
    )


def simulate_run(seed: int, start: float, opportunities: int, config: SimConfig | None) -> Dataset:
    """One contiguous simulated run as features, labels and profits (a training segment)."""
    sim = MarketSimulator(seed, start_time=start, config=config)
    market = MarketState()
    features, ids, stamps, truths = [], [], [], []
    outcome: dict[str, tuple[bool, float]] = {}
    for step in sim.run(opportunities=opportunities):
        market.update(step.prices)
        if step.opportunities:
            features.append(opportunity_features(step.opportunities, market))
            ids += [o.opportunity_id for o in step.opportunities]
            stamps.append([o.timestamp for o in step.opportunities])
            truths.append(step.success_probability)
        outcome.update(
            (o.opportunity_id, (o.success, o.realized_profit_usd)) for o in step.outcomes
        )
    X = np.vstack(features)
    known = np.array([i in outcome for i in ids])
    y = np.array([outcome[i][0] for i, k in zip(ids, known, strict=True) if k], dtype=np.float32)
    profit = np.array([outcome[i][1] for i, k in zip(ids, known, strict=True) if k])
    return Dataset(
        X[known], y, profit, np.concatenate(stamps)[known], np.concatenate(truths)[known]
    )
