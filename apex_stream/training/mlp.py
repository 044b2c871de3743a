"""Training the ONNX member: scikit-learn's MLPClassifier, exported by hand to standard ONNX ops.

The export reads ``coefs_`` / ``intercepts_`` directly (binary classification ends in one
logistic unit), so the model needs no converter and runs on onnxruntime's CUDA and TensorRT
providers. The exported model is checked against ``predict_proba`` before it is returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..inference.onnx_member import OnnxMember, build_mlp_onnx
from .metrics import classification_metrics


def train_mlp(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    hidden: Sequence[int] = (64, 32),
    seed: int = 0,
    max_iter: int = 300,
    *,
    feature_names: Sequence[str] | None = None,
    version: str | None = None,
) -> tuple[bytes, dict[str, float]]:
    """ONNX bytes of an MLP early-stopped on 10 % of the training rows (the validation fold
    stays unseen), and metrics of the exported model on the validation fold."""
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError as exc:
        raise ImportError("training the MLP needs scikit-learn: pip install -e '.[train]'") from exc

    x_train = np.asarray(X_train, np.float64)
    x_val = np.asarray(X_val, np.float64)
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    scale[~(scale > 1e-12)] = 1.0  # constant (or NaN) columns: centre them, do not divide by 0

    clf = MLPClassifier(
        hidden_layer_sizes=tuple(hidden),
        activation="relu",
        solver="adam",
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        max_iter=max_iter,
        random_state=seed,
    )
    clf.fit((x_train - mean) / scale, y_train)
    if len(clf.classes_) != 2:
        raise ValueError(f"y_train must have two classes, found {list(clf.classes_)}")

    model = build_mlp_onnx(
        mean, scale, clf.coefs_, clf.intercepts_, feature_names=feature_names, version=version
    )
    p = OnnxMember(model, device="cpu", warmup_rows=1).predict(x_val)
    reference = clf.predict_proba((x_val - mean) / scale)[:, 1]
    y = (np.asarray(y_val) == clf.classes_[1]).astype(np.int64)
    metrics = classification_metrics(y, p) | {
        "max_abs_diff_vs_sklearn": float(np.max(np.abs(p - reference), initial=0.0)),
        "epochs": float(clf.n_iter_),
    }
    return model, metrics
