"""Training the XGBoost member."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from .metrics import classification_metrics

PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 6,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "nthread": 2,
}


def train_xgboost(
    X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, seed: int = 0
) -> tuple[bytes, dict[str, float]]:
    """A booster early-stopped on the validation fold, saved with only its best trees (so
    ``inplace_predict`` needs no ``iteration_range``), and its validation metrics."""
    train, val = xgb.DMatrix(X_train, y_train), xgb.DMatrix(X_val, y_val)
    booster = xgb.train(
        PARAMS | {"seed": seed},
        train,
        num_boost_round=600,
        evals=[(val, "val")],
        early_stopping_rounds=40,
        verbose_eval=False,
    )
    best = booster[: booster.best_iteration + 1]
    model = bytes(best.save_raw("ubj"))
    metrics = classification_metrics(y_val, best.inplace_predict(X_val))
    return model, metrics | {"trees": float(best.num_boosted_rounds())}
