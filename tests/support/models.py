"""Model files of each kind that validation must refuse, written the way their users would
write them (xgboost's and onnx's own savers), for the unit tests and the CLI drill."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import xgboost as xgb
from onnx import TensorProto, helper, numpy_helper

from apex_stream.features import FEATURE_VERSION, FEATURES


class BadModel(NamedTuple):
    """A file to register as ``name`` (with ``feature_version`` when given) and the part of the
    refusal that says why."""

    name: str
    file: Path
    reason: str
    feature_version: str | None = None


def booster(path: Path, width: int, objective: str, labels: np.ndarray | None = None) -> Path:
    """A small xgboost model on ``width`` random features, saved as xgboost saves it."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, width))
    y = (X[:, 0] > 0).astype(float) if labels is None else labels
    xgb.train({"objective": objective, "max_depth": 2}, xgb.DMatrix(X, label=y), 5).save_model(path)
    return path


def linear_onnx(path: Path, bias: float) -> Path:
    """An ONNX model of the member's shape (float [N, 29] in, [N] out) that outputs ``bias`` for
    every row: no sigmoid, so it can be anything."""
    width = len(FEATURES)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "W", "B"], ["z"]),
            helper.make_node("Reshape", ["z", "flat"], ["probability"]),
        ],
        "not_a_probability",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N"])],
        [
            numpy_helper.from_array(np.zeros((width, 1), np.float32), "W"),
            numpy_helper.from_array(np.array([bias], np.float32), "B"),
            numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        ],
    )
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def bad_models(folder: Path) -> dict[str, BadModel]:
    """One file per kind of bad registration, written into ``folder``."""
    empty = folder / "empty.ubj"
    empty.write_text("{}")
    shipped_xgboost = folder / "shipped.ubj"
    # any valid file: the feature version is refused before it is read
    booster(shipped_xgboost, len(FEATURES), "binary:logistic")
    return {
        "does not load": BadModel(
            "xgboost", empty, "does not load as a xgboost-booster model: XGBoostError"
        ),
        "another feature count": BadModel(
            "xgboost",
            booster(folder / "eight.ubj", 8, "binary:logistic"),
            f"expects 8 features, but the worker computes {len(FEATURES)} "
            f"(feature list {FEATURE_VERSION})",
        ),
        "another feature version": BadModel(
            "xgboost",
            shipped_xgboost,
            "feature-list mismatch: it is declared as trained on feature list 0.9",
            feature_version="0.9",
        ),
        "a regressor": BadModel(
            "xgboost",
            booster(
                folder / "regressor.ubj",
                len(FEATURES),
                "reg:squarederror",
                np.random.default_rng(2).integers(0, 6, 400).astype(float),
            ),
            "reference rows outside [0, 1]",
        ),
        "NaN scores": BadModel(
            "onnx", linear_onnx(folder / "nan.onnx", float("nan")), "scores NaN or infinity"
        ),
        "scores above 1": BadModel(
            "onnx", linear_onnx(folder / "five.onnx", 5.0), "reference rows outside [0, 1]"
        ),
    }
