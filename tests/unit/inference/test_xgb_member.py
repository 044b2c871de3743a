"""The XGBoost member's honest device choice, and its scores against the booster's own."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xgboost as xgb

from apex_stream.features import FEATURES
from apex_stream.inference.registry import Registry
from apex_stream.inference.xgb_member import XGBoostMember
from apex_stream.settings import Settings
from tests.support.builds import cpu_xgboost_only

LOGGER = "apex_stream.inference"


@pytest.fixture(scope="module")
def xgb_model() -> bytes:
    registry = Registry(Settings().models_dir)
    return registry.load_bytes(registry.active("xgboost"))


@cpu_xgboost_only
def test_auto_device_chooses_cpu_and_says_why(
    xgb_model: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        member = XGBoostMember(xgb_model, "1.0.0", device="auto")
    assert member.provider == "cpu"
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "xgboost: predicting on cpu (this xgboost build has no CUDA support (xgboost-cpu))"
    )


@cpu_xgboost_only
def test_requested_cuda_warns_and_falls_back_to_cpu(
    xgb_model: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        member = XGBoostMember(xgb_model, "1.0.0", device="cuda")
    assert member.provider == "cpu"
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.WARNING
    assert "predicting on cpu" in record.getMessage()
    assert "no CUDA support" in record.getMessage()
    # it still scores
    assert member.predict(np.zeros((3, len(FEATURES)), np.float32)).shape == (3,)


def test_explicit_cpu_is_chosen_silently(
    xgb_model: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        member = XGBoostMember(xgb_model, "1.0.0", device="cpu")
    assert member.provider == "cpu"
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_xgboost_member_matches_the_booster_on_a_dmatrix(xgb_model: bytes, simulated) -> None:
    X, _, _ = simulated
    member = XGBoostMember(xgb_model, "1.0.0", device="cpu")
    expected = xgb.Booster(model_file=bytearray(xgb_model)).predict(xgb.DMatrix(X))
    p = member.predict(X)
    assert p.dtype == np.float64 and p.shape == (len(X),)
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-6)
