"""The hand-built ONNX MLP, its training and export, and honest execution-provider selection."""

from __future__ import annotations

import logging
import os
from itertools import pairwise

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from apex_stream.inference import providers
from apex_stream.inference.onnx_member import ALLOWED_OPS, OnnxMember, build_mlp_onnx
from apex_stream.inference.providers import (
    CPU,
    CUDA,
    TENSORRT,
    InferenceSetupError,
    create_session,
    node_placement,
)
from apex_stream.training.mlp import train_mlp

F = 12
cpu_build_only = pytest.mark.skipif(
    CUDA in ort.get_available_providers(), reason="asserts what a CPU-only onnxruntime build does"
)


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


@cpu_build_only
def test_default_order_falls_back_to_cpu_with_reasons(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="apex_stream.inference")
    _, choice = create_session(build_mlp_onnx(**random_mlp()))
    assert choice.requested == (TENSORRT, CUDA, CPU)
    assert choice.active == (CPU,)
    assert set(choice.fallbacks) == {TENSORRT, CUDA}
    assert all("not compiled" in reason for reason in choice.fallbacks.values())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(
        "not compiled into this onnxruntime build" in w for w in warnings
    )
    assert any(r.levelno == logging.INFO and CPU in r.getMessage() for r in caplog.records)


@cpu_build_only
def test_cpu_device_asks_for_cpu_only(caplog: pytest.LogCaptureFixture) -> None:
    _, choice = create_session(build_mlp_onnx(**random_mlp()), device="cpu")
    assert (choice.requested, choice.active, choice.fallbacks) == ((CPU,), (CPU,), {})
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@cpu_build_only
def test_cuda_device_without_cuda_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    member = OnnxMember(build_mlp_onnx(**random_mlp()), device="cuda")
    assert member.choice.requested == (CUDA, CPU) and member.provider == CPU
    assert CUDA in member.choice.fallbacks
    assert any(CUDA in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_gpu_build_without_gpu_reports_native_errors(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """onnxruntime-gpu on a host without CUDA libraries: TensorRT raises, CUDA writes its error
    to the native stderr and silently runs on the CPU (messages as onnxruntime-gpu 1.31 prints)."""
    real_session = ort.InferenceSession

    def fake_session(model, options, providers, enable_fallback):
        if TENSORRT in providers:
            raise RuntimeError("x.cc:729 void f(a&) Please install TensorRT libraries")
        os.write(2, b"\x1b[1;31m2026 [E:onnxruntime:Default, provider_bridge_ort.cc:2458] FAIL : ")
        os.write(2, b"Failed to load library libonnxruntime_providers_cuda.so with error: ")
        os.write(2, b"libcublasLt.so.13: cannot open shared object file\x1b[m\n")
        return real_session(model, options, providers=[CPU])

    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(providers.ort, "InferenceSession", fake_session)
    _, choice = create_session(build_mlp_onnx(**random_mlp()))
    assert choice.active == (CPU,)
    assert choice.fallbacks[TENSORRT] == "failed to initialise: Please install TensorRT libraries"
    assert choice.fallbacks[CUDA] == (
        "failed to initialise, onnxruntime fell back silently: Failed to load library "
        "libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared "
        "object file"
    )
    assert "libcublasLt" not in capfd.readouterr().err  # captured, not left on the terminal


def test_node_placement_reports_cpu_honestly() -> None:
    placement = node_placement(build_mlp_onnx(**random_mlp()), device="auto")
    assert placement.nodes and placement.summary() == {
        placement.choice.provider: len(placement.nodes)
    }
    assert placement.all_on_gpu == (placement.choice.provider in providers.GPU_PROVIDERS)
