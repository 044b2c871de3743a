"""Binary classification metrics recorded with every trained model, from scikit-learn.

scikit-learn comes with the `train` extra, so it is imported when a metric is computed: the
lifecycle controller imports this module (through retraining) and starts without the extra.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType

import numpy as np

#: probabilities are clipped to [EPS, 1 - EPS], so a certain wrong prediction has a finite log loss
EPS = 1e-7


def _sklearn_metrics() -> ModuleType:
    try:
        return importlib.import_module("sklearn.metrics")
    except ImportError as exc:
        raise ImportError("training metrics need scikit-learn: pip install -e '.[train]'") from exc


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN for one class, where scikit-learn
    warns."""
    y = np.asarray(y, bool)
    if y.all() or not y.any():
        return math.nan
    return float(_sklearn_metrics().roc_auc_score(y, score))


def classification_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """AUC, log loss, Brier score, calibration error (ECE), accuracy/precision/recall at
    ``threshold``, base rate."""
    metrics = _sklearn_metrics()
    y = np.asarray(y) == 1
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    decided = p > threshold
    return {
        "auc": roc_auc(y, p),
        "logloss": float(metrics.log_loss(y, p, labels=[False, True])),
        "brier": float(metrics.brier_score_loss(y, p, pos_label=True)),
        "ece": expected_calibration_error(y, p),
        "accuracy": float(metrics.accuracy_score(y, decided)),
        "precision": float(metrics.precision_score(y, decided, zero_division=0.0)),
        "recall": float(metrics.recall_score(y, decided, zero_division=0.0)),
        "base_rate": float(y.mean()),
        "samples": float(len(y)),
    }


#: equal-width probability bins of the calibration figures
CALIBRATION_BINS = 10


def reliability(
    y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of ``p``: rows, mean predicted probability and observed success rate
    (NaN for an empty bin): the points of a reliability plot."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(index, weights=p, minlength=bins) / counts
        observed = np.bincount(index, weights=y, minlength=bins) / counts
    return counts, predicted, observed


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """ECE: the row-weighted mean gap between predicted probability and observed success rate
    over equal-width bins; NaN without rows."""
    counts, predicted, observed = reliability(y, p, bins)
    filled = counts > 0
    if not filled.any():
        return math.nan
    gap = np.abs(predicted[filled] - observed[filled])
    return float(np.sum(counts[filled] * gap) / counts.sum())
