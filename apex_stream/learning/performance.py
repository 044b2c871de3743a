"""Per-model-version performance from outcomes, for A/B decisions.

Each (member, version) keeps confusion counts under the configured decision rule (which rows
its score would have executed), the realized profit of those rows (sum and sum of squares, for
the A/B test's profit comparison), the latency of the predictions it took part in, and
histograms of its scores for successes and failures, from which the AUC is read (exact up to
ties within a 1/1000 bin). Updates are vectorized over an outcome batch.

The rule is the worker's (``APEX_DECISION_RULE``), applied to the member's score as the ensemble
applies it to the vote: under the threshold rule a score strictly above the threshold
executes; under the expected-profit rule, an expected profit above the minimum, from the same
:func:`~apex_stream.inference.decision.trade_values` of the features the outcome was joined
with. So an A/B test from the book judges what the worker does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..inference.decision import Rule, expected_profit, expected_profit_gate, trade_values

BINS = 1000


def _histogram() -> np.ndarray:
    return np.zeros(BINS, dtype=np.int64)


@dataclass
class VersionPerformance:
    """Streaming metrics of one model version."""

    threshold: float
    rule: Rule = "threshold"
    min_expected_profit_usd: float = 0.0
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    realized_profit_usd: float = 0.0
    realized_profit_sq_usd: float = 0.0  # of the executed rows, for the profit test's variance
    latency_ms: float = 0.0  # summed over every scored opportunity
    positives: np.ndarray = field(default_factory=_histogram)
    negatives: np.ndarray = field(default_factory=_histogram)

    def executes(self, scores: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The rows the decision rule executes at these scores (``X``: their features)."""
        if self.rule == "expected_profit":
            expected = expected_profit(scores, *trade_values(X))
            return expected_profit_gate(expected, self.min_expected_profit_usd)
        decision: np.ndarray = scores > self.threshold
        return decision

    def update(
        self,
        scores: np.ndarray,
        success: np.ndarray,
        profit: np.ndarray,
        latency_ms: np.ndarray,
        X: np.ndarray,
    ) -> None:
        success = np.asarray(success, dtype=bool)
        self.latency_ms += float(np.sum(latency_ms))
        executed = self.executes(scores, X)
        self.tp += int((executed & success).sum())
        self.fp += int((executed & ~success).sum())
        self.fn += int((~executed & success).sum())
        self.tn += int((~executed & ~success).sum())
        self.realized_profit_usd += float(profit[executed].sum())
        self.realized_profit_sq_usd += float(np.square(profit[executed]).sum())
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
            "profit_per_opportunity_usd": self.realized_profit_usd / samples if samples else 0.0,
            "latency_ms_mean": self.latency_ms / samples if samples else 0.0,
        }


class PerformanceBook:
    """Performance of every (member, version) seen in outcomes, under one decision rule."""

    def __init__(
        self, threshold: float, rule: Rule = "threshold", min_expected_profit_usd: float = 0.0
    ) -> None:
        self.threshold = threshold
        self.rule = rule
        self.min_expected_profit_usd = min_expected_profit_usd
        self.versions: dict[tuple[str, str], VersionPerformance] = {}

    def update(
        self,
        member: str,
        version: str,
        scores: np.ndarray,
        success: np.ndarray,
        profit: np.ndarray,
        latency_ms: np.ndarray,
        X: np.ndarray,
    ) -> None:
        key = (member, version)
        if key not in self.versions:
            self.versions[key] = VersionPerformance(
                self.threshold, self.rule, self.min_expected_profit_usd
            )
        self.versions[key].update(scores, success, profit, latency_ms, X)

    def summary(self) -> dict[str, dict[str, float]]:
        return {f"{m}@{v}": perf.summary() for (m, v), perf in sorted(self.versions.items())}
