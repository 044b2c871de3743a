"""The XGBoost member's honest device choice and the shipped ensemble scoring simulated
opportunities, with and without market state."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest
import xgboost as xgb

from apex_stream.features import FEATURES, MarketState, impute, opportunity_features
from apex_stream.inference.ensemble import Ensemble
from apex_stream.inference.members import MEMBERS
from apex_stream.inference.registry import Registry
from apex_stream.inference.xgb_member import XGBoostMember
from apex_stream.settings import Settings
from apex_stream.simulator import MarketSimulator
from apex_stream.training.metrics import roc_auc

LOGGER = "apex_stream.inference"
cpu_xgboost_only = pytest.mark.skipif(
    bool(xgb.build_info().get("USE_CUDA", False)),
    reason="asserts what a CPU-only xgboost build (xgboost-cpu) does",
)
cpu_onnxruntime_only = pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="asserts what a CPU-only onnxruntime build does",
)


@pytest.fixture(scope="module")
def xgb_model() -> bytes:
    registry = Registry(Settings().models_dir)
    return registry.load_bytes(registry.active("xgboost"))


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    return Ensemble(Settings())


@pytest.fixture(scope="module")
def simulated() -> tuple[np.ndarray, np.ndarray, list]:
    """Features of ~2000 opportunities, each computed after the prices before it, and their
    hidden success probabilities."""
    market = MarketState()
    blocks, truth, opportunities = [], [], []
    for step in MarketSimulator(5).run(duration=10.0):
        market.update(step.prices)
        if step.opportunities:
            blocks.append(opportunity_features(step.opportunities, market))
            truth.append(step.success_probability)
            opportunities += step.opportunities
    return np.vstack(blocks), np.concatenate(truth), opportunities


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


def test_ensemble_loads_every_member_from_the_manifest(ensemble: Ensemble) -> None:
    assert ensemble.versions == {m: "1.0.0" for m in MEMBERS}
    assert ensemble.online.features == FEATURES
    assert ensemble.xgboost.booster.num_features() == len(FEATURES)
    assert ensemble.onnx.n_features == len(FEATURES)
    for name in MEMBERS:
        assert ensemble.means[name].shape == (len(FEATURES),)
        assert np.isfinite(ensemble.means[name]).all()


@cpu_xgboost_only
@cpu_onnxruntime_only
def test_ensemble_providers_on_a_cpu_machine(ensemble: Ensemble) -> None:
    assert ensemble.providers == {
        "xgboost": "cpu",
        "onnx": "CPUExecutionProvider",
        "online": "cpu",
    }


def test_ensemble_scores_simulated_opportunities(ensemble: Ensemble, simulated) -> None:
    X, truth, opportunities = simulated
    assert len(opportunities) == len(X) > 1000
    # the first opportunities arrive before some of their tokens were quoted
    coverage = X[:, FEATURES.index("market_coverage")]
    assert coverage.min() < 1.0 and np.mean(coverage == 1.0) > 0.9

    scores = ensemble.score(X)
    assert scores.members.keys() == set(MEMBERS)
    for name, p in scores.members.items():
        assert p.shape == (len(X),), name
        assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all(), name
    # each member scores the batch (with its own training means filled in) as it would alone
    for member in (ensemble.xgboost, ensemble.onnx, ensemble.online):
        alone = member.predict(impute(X, ensemble.means[member.name]))
        np.testing.assert_array_equal(scores.members[member.name], alone)

    vote = scores.vote
    assert vote.score.shape == vote.decision.shape == (len(X),)
    assert ((vote.score >= 0) & (vote.score <= 1)).all()
    np.testing.assert_array_equal(vote.decision, vote.score > ensemble.voting.threshold)
    # the default weighted vote: xgboost 0.6, onnx 0.4, blended with 0.2 of the online member
    config, m = ensemble.voting, scores.members
    assert config.strategy == "weighted" and config.online_weight == 0.2
    assert config.weights == {"xgboost": 0.6, "onnx": 0.4}
    expected = 0.8 * (0.6 * m["xgboost"] + 0.4 * m["onnx"]) + 0.2 * m["online"]
    np.testing.assert_allclose(vote.score, expected, rtol=0, atol=1e-12)
    assert 0 < vote.decision.sum() < len(X)

    # the scores rank like the hidden truth: outcomes drawn from it are predictable
    success = np.random.default_rng(0).random(len(truth)) < truth
    assert roc_auc(success, vote.score) > 0.75


def test_missing_market_state_is_imputed(ensemble: Ensemble, simulated) -> None:
    _, _, opportunities = simulated
    X = opportunity_features(opportunities, MarketState())
    assert np.isnan(X).any()

    scores = ensemble.score(X)
    for name, p in scores.members.items():
        assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all(), name
        filled = np.where(np.isnan(X), ensemble.means[name], X)
        np.testing.assert_array_equal(impute(X, ensemble.means[name]), filled)
    assert np.isfinite(scores.vote.score).all()
    np.testing.assert_array_equal(
        scores.members["xgboost"],
        ensemble.xgboost.predict(np.where(np.isnan(X), ensemble.means["xgboost"], X)),
    )
