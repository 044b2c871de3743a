"""The XGBoost member: a native Booster scoring whole batches with ``inplace_predict``.

On a CUDA build of xgboost with a GPU present it predicts on the GPU (``device=cuda``);
otherwise, or if that fails, on the CPU, with the reason logged.
"""

from __future__ import annotations

import logging

import numpy as np
import xgboost as xgb

log = logging.getLogger("apex_stream.inference")


class XGBoostMember:
    """Success probability from a gradient-boosted tree ensemble."""

    name = "xgboost"

    def __init__(self, model: bytes, version: str, *, device: str = "auto", threads: int = 2):
        self.version = version
        self.booster = xgb.Booster(model_file=bytearray(model))
        self.booster.set_param({"nthread": threads})
        self.provider = self._choose_device(device)  # "cuda" or "cpu"

    def _choose_device(self, device: str) -> str:
        if device == "cpu":
            return "cpu"
        if not xgb.build_info().get("USE_CUDA", False):
            reason = "this xgboost build has no CUDA support (xgboost-cpu)"
        else:
            try:
                self.booster.set_param({"device": "cuda"})
                self.booster.inplace_predict(np.zeros((1, self.booster.num_features()), np.float32))
                log.info("xgboost: predicting on cuda")
                return "cuda"
            except xgb.core.XGBoostError as exc:
                reason = f"cuda failed: {str(exc).splitlines()[0]}"
                self.booster.set_param({"device": "cpu"})
        (log.warning if device == "cuda" else log.info)("xgboost: predicting on cpu (%s)", reason)
        return "cpu"

    @property
    def n_features(self) -> int:
        """The width of the matrix the model was trained on (validation compares it with the
        feature list's: scoring another width fails, or is wrong, on every batch)."""
        return int(self.booster.num_features())

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability of success for every row."""
        return np.asarray(self.booster.inplace_predict(X, validate_features=False), np.float64)
