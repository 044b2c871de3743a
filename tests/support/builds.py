"""Skip marks for assertions that only hold on a CPU-only build of a library."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import xgboost as xgb

cpu_xgboost_only = pytest.mark.skipif(
    bool(xgb.build_info().get("USE_CUDA", False)),
    reason="asserts what a CPU-only xgboost build (xgboost-cpu) does",
)
cpu_onnxruntime_only = pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="asserts what a CPU-only onnxruntime build does",
)
