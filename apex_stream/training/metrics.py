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
    """AUC, log loss, Brier score, accuracy/precision/recall at ``threshold``, base rate."""
    metrics = _sklearn_metrics()
    y = np.asarray(y) == 1
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    decided = p > threshold
    return {
        "auc": roc_auc(y, p),
        "logloss": float(metrics.log_loss(y, p, labels=[False, True])),
        "brier": float(metrics.brier_score_loss(y, p, pos_label=True)),
        "accuracy": float(metrics.accuracy_score(y, decided)),
        "precision": float(metrics.precision_score(y, decided, zero_division=0.0)),
        "recall": float(metrics.recall_score(y, decided, zero_division=0.0)),
        "base_rate": float(y.mean()),
        "samples": float(len(y)),
    }
