"""Training the XGBoost member."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xgboost as xgb

from .metrics import classification_metrics

PARAMS: dict[str, str | float] = {
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
ROUNDS, PATIENCE = 600, 40


def train_xgboost(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    seed: int = 0,
    *,
    params: Mapping[str, float] | None = None,
    base: bytes | None = None,
) -> tuple[bytes, dict[str, float]]:
    """A booster early-stopped on the validation fold, saved with only its best trees (so
    ``inplace_predict`` needs no ``iteration_range``), and its validation metrics.

    ``params`` replace entries of :data:`PARAMS` (the hyper-parameters tuning chose). ``base``
    is a booster to continue (warm start): its trees are kept and new ones fit what it gets
    wrong on these rows; early stopping may keep none of them."""
    train, val = xgb.DMatrix(X_train, y_train), xgb.DMatrix(X_val, y_val)
    start = xgb.Booster(model_file=bytearray(base)) if base is not None else None
    booster = xgb.train(
        PARAMS | dict(params or {}) | {"seed": seed},
        train,
        num_boost_round=ROUNDS,
        evals=[(val, "val")],
        early_stopping_rounds=PATIENCE,
        verbose_eval=False,
        xgb_model=start,
    )
    best = booster[: booster.best_iteration + 1]
    model = bytes(best.save_raw("ubj"))
    metrics = classification_metrics(y_val, best.inplace_predict(X_val))
    return model, metrics | {"trees": float(best.num_boosted_rounds())}


def gain_shares(model: bytes, names: Sequence[str]) -> dict[str, float]:
    """Each feature's share of the booster's total split gain (xgboost's ``total_gain``), in
    ``names``' order; a feature no tree splits on has 0."""
    booster = xgb.Booster(model_file=bytearray(model))
    # one number per feature for this importance type (lists are for vector leaves)
    gain = {k: float(np.sum(v)) for k, v in booster.get_score(importance_type="total_gain").items()}
    total = sum(gain.values()) or 1.0
    return {name: gain.get(f"f{i}", 0.0) / total for i, name in enumerate(names)}
