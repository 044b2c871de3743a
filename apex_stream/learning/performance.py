"""Per-model-version performance from outcomes, for A/B decisions.

Each (member, version) keeps confusion counts at the decision threshold (a score strictly above
it executes), the realized profit of what it would have executed, the latency of the
predictions it took part in, and histograms of its scores for successes and failures, from
which the AUC is read (exact up to ties within a 1/1000 bin).
Updates are vectorized over an outcome batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BINS = 1000


def _histogram() -> np.ndarray:
    return np.zeros(BINS, dtype=np.int64)


@dataclass
class VersionPerformance:
    """Streaming metrics of one model version."""

    threshold: float
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    realized_profit_usd: float = 0.0
    latency_ms: float = 0.0  # summed over every scored opportunity
    positives: np.ndarray = field(default_factory=_histogram)
    negatives: np.ndarray = field(default_factory=_histogram)

    def update(
        self,
        scores: np.ndarray,
        success: np.ndarray,
        profit: np.ndarray,
        latency_ms: np.ndarray,
    ) -> None:
        success = np.asarray(success, dtype=bool)
        self.latency_ms += float(np.sum(latency_ms))
        executed = scores > self.threshold
        self.tp += int((executed & success).sum())
        self.fp += int((executed & ~success).sum())
        self.fn += int((~executed & success).sum())
        self.tn += int((~executed & ~success).sum())
        self.realized_profit_usd += float(profit[executed].sum())
        bins = np.clip((scores * BINS).astype(np.int64), 0, BINS - 1)
        self.positives += np.bincount(bins[success], minlength=BINS)
        self.negatives += np.bincount(bins[~success], minlength=BINS)

    @property
    def auc(self) -> float:
        """P(score of a success > score of a failure), ties (same bin) counting one half."""
        pos, neg = self.positives.sum(), self.negatives.sum()
        if pos == 0 or neg == 0:
            return float("nan")
        below = np.cumsum(self.negatives) - self.negatives  # failures in lower bins
        wins = (self.positives * below).sum() + 0.5 * (self.positives * self.negatives).sum()
        return float(wins / (pos * neg))

    def summary(self) -> dict[str, float]:
        samples = self.tp + self.fp + self.tn + self.fn
        executed = self.tp + self.fp
        return {
            "samples": samples,
            "executed": executed,
            "accuracy": (self.tp + self.tn) / samples if samples else 0.0,
            "precision": self.tp / executed if executed else 0.0,
            "recall": self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0,
            "auc": self.auc,
            "realized_profit_usd": self.realized_profit_usd,
            "latency_ms_mean": self.latency_ms / samples if samples else 0.0,
        }


class PerformanceBook:
    """Performance of every (member, version) seen in outcomes."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.versions: dict[tuple[str, str], VersionPerformance] = {}

    def update(
        self,
        member: str,
        version: str,
        scores: np.ndarray,
        success: np.ndarray,
        profit: np.ndarray,
        latency_ms: np.ndarray,
    ) -> None:
        key = (member, version)
        if key not in self.versions:
            self.versions[key] = VersionPerformance(self.threshold)
        self.versions[key].update(scores, success, profit, latency_ms)

    def summary(self) -> dict[str, dict[str, float]]:
        return {f"{m}@{v}": perf.summary() for (m, v), perf in sorted(self.versions.items())}
