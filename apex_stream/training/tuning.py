"""Choosing XGBoost's hyper-parameters by time-series cross-validation.

Rows are in time order, so folds must not look ahead: scikit-learn's ``TimeSeriesSplit`` trains
each candidate on the rows before a block and scores it on the block. The first half of the
block early-stops the booster and the second half scores it, so the score is out of sample. The
candidate with the lowest mean log loss wins: log loss rewards ranking and calibration both,
which are what the vote and the expected-profit decision read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .metrics import classification_metrics
from .xgb import train_xgboost

#: The candidates: depth trades interactions for variance, ``min_child_weight`` smooths leaves.
GRID: tuple[Mapping[str, float], ...] = tuple(
    {"max_depth": depth, "min_child_weight": weight} for depth in (4, 6) for weight in (5, 50)
)
FOLDS = 3


def choose_params(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    grid: Sequence[Mapping[str, float]] = GRID,
    folds: int = FOLDS,
) -> tuple[dict[str, float], dict[str, float]]:
    """The grid point with the lowest mean out-of-sample log loss over ``folds`` time-series
    folds of ``X`` (rows in time order), and its cross-validated figures (``cv_logloss``,
    ``cv_auc``)."""
    try:
        from sklearn.model_selection import TimeSeriesSplit
    except ImportError as exc:
        raise ImportError("tuning needs scikit-learn: pip install -e '.[train]'") from exc

    splits = list(TimeSeriesSplit(n_splits=folds).split(X))
    best: tuple[float, dict[str, float], dict[str, float]] | None = None
    for candidate in grid:
        losses, aucs = [], []
        for past, block in splits:
            stop, score = block[: len(block) // 2], block[len(block) // 2 :]
            model, _ = train_xgboost(X[past], y[past], X[stop], y[stop], seed, params=candidate)
            p = _predict(model, X[score])
            figures = classification_metrics(y[score], p)
            losses.append(figures["logloss"])
            aucs.append(figures["auc"])
        loss = float(np.mean(losses))
        if best is None or loss < best[0]:
            best = (loss, dict(candidate), {"cv_logloss": loss, "cv_auc": float(np.mean(aucs))})
    if best is None:
        raise ValueError("the grid has no candidates")
    return best[1], best[2]


def _predict(model: bytes, X: np.ndarray) -> np.ndarray:
    import xgboost as xgb

    return np.asarray(xgb.Booster(model_file=bytearray(model)).inplace_predict(X), np.float64)
