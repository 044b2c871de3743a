"""Per-model-version performance from outcomes, for A/B decisions.

Each (member, version) keeps river's streaming classification metrics over the outcomes of the
opportunities it scored, plus the realized profit of the ones its decision would have executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from river import metrics


@dataclass
class VersionPerformance:
    """Streaming metrics of one model version at the decision threshold."""

    threshold: float
    samples: int = 0
    executed: int = 0
    realized_profit_usd: float = 0.0
    accuracy: metrics.Accuracy = field(default_factory=metrics.Accuracy)
    precision: metrics.Precision = field(default_factory=metrics.Precision)
    recall: metrics.Recall = field(default_factory=metrics.Recall)
    auc: metrics.ROCAUC = field(default_factory=lambda: metrics.ROCAUC(n_thresholds=50))

    def update(self, scores: np.ndarray, success: np.ndarray, profit: np.ndarray) -> None:
        decided = scores > self.threshold
        for p, yes, y in zip(scores.tolist(), decided.tolist(), success.tolist(), strict=True):
            y = bool(y)
            self.accuracy.update(y, yes)
            self.precision.update(y, yes)
            self.recall.update(y, yes)
            self.auc.update(y, p)
        self.samples += len(scores)
        self.executed += int(decided.sum())
        self.realized_profit_usd += float(profit[decided].sum())

    def summary(self) -> dict[str, float]:
        return {
            "samples": self.samples,
            "executed": self.executed,
            "accuracy": float(self.accuracy.get()),
            "precision": float(self.precision.get()),
            "recall": float(self.recall.get()),
            "auc": float(self.auc.get()),
            "realized_profit_usd": self.realized_profit_usd,
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
    ) -> None:
        key = (member, version)
        if key not in self.versions:
            self.versions[key] = VersionPerformance(self.threshold)
        self.versions[key].update(scores, success, profit)

    def summary(self) -> dict[str, dict[str, float]]:
        return {f"{m}@{v}": perf.summary() for (m, v), perf in sorted(self.versions.items())}
