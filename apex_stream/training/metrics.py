"""Binary classification metrics recorded with every trained model (numpy only)."""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank statistic (ties get their average rank)."""
    y = np.asarray(y, bool)
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = np.asarray(score)[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(score)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    positives, negatives = y.sum(), (~y).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def classification_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """AUC, log loss, Brier score, accuracy/precision/recall at ``threshold``, base rate."""
    y = np.asarray(y, np.float64)
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    decided = p > threshold
    tp = float((decided & (y == 1)).sum())
    return {
        "auc": roc_auc(y, p),
        "logloss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "brier": float(np.mean((p - y) ** 2)),
        "accuracy": float(np.mean(decided == (y == 1))),
        "precision": tp / max(float(decided.sum()), 1.0),
        "recall": tp / max(float(y.sum()), 1.0),
        "base_rate": float(y.mean()),
        "samples": float(len(y)),
    }
