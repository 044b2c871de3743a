"""The MLP's training and its faithful export to ONNX."""

from __future__ import annotations

import numpy as np
import onnx

from apex_stream.inference.onnx_member import ALLOWED_OPS
from apex_stream.training.mlp import train_mlp


def test_train_mlp_learns_and_exports_faithfully() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 6)) * rng.uniform(0.1, 50, 6) + rng.normal(0, 10, 6)
    x[:, 5] = 3.0  # a constant column must not divide by zero
    logit = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std() - 2 * (x[:, 1] - x[:, 1].mean()) / x[
        :, 1
    ].std()
    y = (logit + rng.normal(0, 0.3, len(x)) > 0).astype(int)
    model, metrics = train_mlp(x[:1500], y[:1500], x[1500:], y[1500:], hidden=(16, 8), seed=0)
    assert metrics["auc"] > 0.9
    assert metrics["max_abs_diff_vs_sklearn"] < 1e-5
    assert set(metrics) >= {"auc", "logloss", "accuracy", "brier"}
    assert {n.op_type for n in onnx.load_from_string(model).graph.node} <= ALLOWED_OPS
