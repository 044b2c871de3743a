"""Honest execution-provider selection: what was asked for, what runs, and why not the rest."""

from __future__ import annotations

import logging
import os

import onnxruntime as ort
import pytest

from apex_stream.inference import providers
from apex_stream.inference.onnx_member import build_mlp_onnx
from apex_stream.inference.providers import CPU, CUDA, TENSORRT, create_session, node_placement
from tests.support.builds import cpu_onnxruntime_only
from tests.unit.inference.test_onnx_member import random_mlp


@cpu_onnxruntime_only
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


@cpu_onnxruntime_only
def test_cpu_device_asks_for_cpu_only(caplog: pytest.LogCaptureFixture) -> None:
    _, choice = create_session(build_mlp_onnx(**random_mlp()), device="cpu")
    assert (choice.requested, choice.active, choice.fallbacks) == ((CPU,), (CPU,), {})
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


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
