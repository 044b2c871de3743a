"""The training recipe's parts: hyper-parameters chosen by time-series cross-validation, warm
start, and feature importance."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from apex_stream.training.dataset import Dataset
from apex_stream.training.importance import permutation_importance
from apex_stream.training.tuning import choose_params
from apex_stream.training.xgb import gain_shares, train_xgboost


def synthetic(n: int, seed: int = 0) -> Dataset:
    """Rows in time order whose success depends on the first two of four columns."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    p = 1 / (1 + np.exp(-(2 * X[:, 0] - X[:, 1])))
    y = (rng.random(n) < p).astype(np.float32)
    return Dataset(X, y, np.zeros(n), np.arange(n, dtype=np.float64), p)


def test_cross_validation_picks_a_grid_point_by_out_of_sample_log_loss() -> None:
    data = synthetic(3000)
    grid = ({"max_depth": 1, "min_child_weight": 5}, {"max_depth": 3, "min_child_weight": 5})
    params, cv = choose_params(data.X, data.y, grid=grid, folds=2)
    assert params in [dict(g) for g in grid]
    assert set(cv) == {"cv_logloss", "cv_auc"} and cv["cv_auc"] > 0.75
    assert choose_params(data.X, data.y, grid=grid, folds=2) == (params, cv)  # deterministic


def test_warm_start_keeps_the_base_trees_and_adds_its_own() -> None:
    data = synthetic(4000)
    base, _ = train_xgboost(data.X[:1000], data.y[:1000], data.X[1000:1500], data.y[1000:1500])
    warm, _ = train_xgboost(
        data.X[1500:3500], data.y[1500:3500], data.X[3500:], data.y[3500:], base=base
    )
    rounds = [xgb.Booster(model_file=bytearray(m)).num_boosted_rounds() for m in (base, warm)]
    assert rounds[1] > rounds[0]


def test_gain_shares_sum_to_one_and_name_the_informative_features() -> None:
    data = synthetic(3000)
    model, _ = train_xgboost(data.X[:2000], data.y[:2000], data.X[2000:], data.y[2000:])
    shares = gain_shares(model, ["a", "b", "c", "d"])
    assert list(shares) == ["a", "b", "c", "d"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["a"] > shares["b"] > max(shares["c"], shares["d"])


def test_permutation_importance_is_zero_for_a_feature_the_model_ignores() -> None:
    data = synthetic(3000)

    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(X[:, 0], np.float64)  # reads the first column only

    drops = permutation_importance(predict, data.X, data.y, ["a", "b", "c", "d"], rows=2000)
    assert drops["a"] > 0.1
    assert drops["b"] == drops["c"] == drops["d"] == 0.0
