"""The ONNX member: a small MLP run by onnxruntime, on the GPU where one really works.

onnxruntime's ONNX-ML operators (TreeEnsemble, Scaler, ZipMap) have CPU kernels only, so the
graph is built by hand from standard ops that CUDA and TensorRT both implement
(:data:`ALLOWED_OPS`): ``sigmoid(MLP((x - mean) / scale))`` with ReLU hidden layers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from .providers import Device, create_session

INPUT = "features"  # float32 [N, F], N dynamic
OUTPUT = "probability"  # float32 [N]: the [N, 1] logistic unit reshaped to one value per row
ALLOWED_OPS = frozenset({"Sub", "Div", "Gemm", "Relu", "Sigmoid", "Reshape"})


def build_mlp_onnx(
    mean: np.ndarray,
    scale: np.ndarray,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    opset: int = 17,
    *,
    feature_names: Sequence[str] | None = None,
    version: str | None = None,
    doc_string: str = "apex-stream MLP: sigmoid(MLP((features - mean) / scale))",
) -> bytes:
    """Serialised ONNX model of the MLP; ``weights[i]`` is (inputs, outputs) as in sklearn's
    ``coefs_`` and the last layer has one output (the logit)."""
    import onnx  # only training and tests build models; workers only run them
    from onnx import TensorProto, helper, numpy_helper

    mean = np.asarray(mean, np.float32).reshape(-1)
    scale = np.asarray(scale, np.float32).reshape(-1)
    n_features = mean.size
    if scale.shape != mean.shape or not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError(f"scale must be {n_features} finite positive values")
    if not weights or len(weights) != len(biases):
        raise ValueError("need one bias vector per weight matrix, and at least one layer")
    if feature_names is not None and len(feature_names) != n_features:
        raise ValueError(f"{len(feature_names)} feature names for {n_features} features")

    inits = [numpy_helper.from_array(mean, "mean"), numpy_helper.from_array(scale, "scale")]
    nodes = [
        helper.make_node("Sub", [INPUT, "mean"], ["centred"], name="centre"),
        helper.make_node("Div", ["centred", "scale"], ["h0"], name="standardise"),
    ]
    width = n_features
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        w = np.asarray(w, np.float32)
        b = np.asarray(b, np.float32).reshape(-1)
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
            raise ValueError(f"layer {i}: weights {w.shape} and bias {b.shape} after width {width}")
        width = w.shape[1]
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes.append(
            helper.make_node("Gemm", [f"h{i}", f"W{i}", f"B{i}"], [f"z{i}"], name=f"dense{i}")
        )
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"h{i + 1}"], name=f"relu{i}"))
    if width != 1:
        raise ValueError(f"the last layer must have one output (the logit), not {width}")
    last = len(weights) - 1
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "flat"))
    nodes += [
        helper.make_node("Sigmoid", [f"z{last}"], ["p"], name="sigmoid"),
        helper.make_node("Reshape", ["p", "flat"], [OUTPUT], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes,
        "apex_stream_mlp",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N"])],
        inits,
    )
    # The IR version that matches the opset, so older onnxruntime builds load it too.
    model = helper.make_model_gen_version(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="apex-stream"
    )
    model.doc_string = doc_string
    props = {"n_features": str(n_features)}
    if feature_names is not None:
        props["feature_names"] = json.dumps(list(feature_names))
    if version is not None:
        props["version"] = version
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    blob: bytes = model.SerializeToString()
    return blob


class OnnxMember:
    """Success probability from the exported MLP."""

    name = "onnx"

    def __init__(
        self,
        model: bytes,
        version: str = "",
        *,
        device: Device = "auto",
        threads: int = 1,
        warmup_rows: int = 4096,
    ) -> None:
        """``model`` is already checksum-verified. Batches of 1 and ``warmup_rows`` rows run
        once here so memory arenas (and any TensorRT engine's shape range) are ready before
        the first live batch."""
        self.version = version
        self.session, self.choice = create_session(
            model, device=device, intra_op_num_threads=threads
        )
        (feature,) = self.session.get_inputs()
        self._input = feature.name
        self._outputs = [self.session.get_outputs()[0].name]
        self.n_features = int(feature.shape[1])
        for rows in sorted({1, warmup_rows}):
            self.predict(np.zeros((rows, self.n_features), np.float32))

    @property
    def provider(self) -> str:
        """The execution provider in use, e.g. ``CUDAExecutionProvider``."""
        return self.choice.provider

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability of success for every row of ``X`` (n, F), as float64 (n,)."""
        x = np.ascontiguousarray(X, dtype=np.float32)  # no copy when already C float32
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape (n, {self.n_features}), got {x.shape}")
        p: np.ndarray
        (p,) = self.session.run(self._outputs, {self._input: x})
        return p.astype(np.float64)
