"""The hand-built ONNX MLP: its graph, its output against numpy's, what it refuses, and the
provider a member falls back to."""

from __future__ import annotations

import logging
from itertools import pairwise

import numpy as np
import onnx
import pytest

from apex_stream.inference.onnx_member import ALLOWED_OPS, OnnxMember, build_mlp_onnx
from apex_stream.inference.providers import (
    CPU,
    CUDA,
    InferenceSetupError,
    create_session,
)
from tests.support.builds import cpu_onnxruntime_only

F = 12


def random_mlp(seed: int = 0, hidden: tuple[int, ...] = (16, 8)) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    sizes = [F, *hidden, 1]
    return {
        "mean": rng.normal(size=F),
        "scale": rng.uniform(0.5, 2.0, F),
        "weights": [rng.normal(0, 1 / np.sqrt(a), (a, b)) for a, b in pairwise(sizes)],
        "biases": [rng.normal(0, 0.1, b) for b in sizes[1:]],
    }


def numpy_mlp(x: np.ndarray, mean, scale, weights, biases) -> np.ndarray:
    h = (x - mean) / scale
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w + b
        if i < len(weights) - 1:
            h = np.maximum(h, 0.0)
    return 1.0 / (1.0 + np.exp(-h[:, 0]))


def test_graph_uses_only_standard_ops_with_gpu_kernels() -> None:
    names = [f"f{i}" for i in range(F)]
    model = onnx.load_from_string(build_mlp_onnx(**random_mlp(), feature_names=names, version="2"))
    onnx.checker.check_model(model)
    assert {node.op_type for node in model.graph.node} <= ALLOWED_OPS
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    assert [op.domain for op in model.opset_import] == [""]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["version"] == "2" and props["feature_names"].startswith('["f0", "f1"')
    assert [i.name for i in model.graph.input] == ["features"]
    assert [o.name for o in model.graph.output] == ["probability"]


@pytest.mark.parametrize("rows", [1, 7, 4096])
def test_output_matches_numpy_mlp(rows: int) -> None:
    params = random_mlp(seed=rows)
    member = OnnxMember(build_mlp_onnx(**params), "1", device="cpu")
    x = np.random.default_rng(1).normal(size=(rows, F)).astype(np.float32)
    p = member.predict(x)
    assert p.shape == (rows,) and p.dtype == np.float64
    np.testing.assert_allclose(p, numpy_mlp(x.astype(np.float64), **params), rtol=0, atol=1e-5)
    assert member.name == "onnx" and member.provider == CPU


def test_invalid_models_and_inputs_are_refused() -> None:
    params = random_mlp()
    with pytest.raises(ValueError, match="scale"):
        build_mlp_onnx(**(params | {"scale": np.zeros(F)}))
    with pytest.raises(ValueError, match="one output"):
        build_mlp_onnx(params["mean"], params["scale"], params["weights"][:1], params["biases"][:1])
    member = OnnxMember(build_mlp_onnx(**params), device="cpu", warmup_rows=1)
    with pytest.raises(ValueError, match=f"\\(n, {F}\\)"):
        member.predict(np.zeros((3, F + 1)))
    assert member.predict(np.zeros((0, F))).shape == (0,)
    with pytest.raises(InferenceSetupError):
        create_session(b"not an onnx model", device="cpu")


@cpu_onnxruntime_only
def test_cuda_device_without_cuda_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    member = OnnxMember(build_mlp_onnx(**random_mlp()), device="cuda")
    assert member.choice.requested == (CUDA, CPU) and member.provider == CPU
    assert CUDA in member.choice.fallbacks
    assert any(CUDA in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
