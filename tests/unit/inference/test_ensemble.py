"""The shipped ensemble scoring simulated opportunities, with and without market state, and
an A/B test scoring each route with its version."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from apex_stream.features import FEATURES, MarketState, impute, opportunity_features
from apex_stream.inference.ensemble import Ensemble
from apex_stream.inference.members import MEMBERS
from apex_stream.inference.registry import Registry
from apex_stream.inference.routes import assign
from apex_stream.settings import Settings
from apex_stream.training.metrics import roc_auc
from tests.support.builds import cpu_onnxruntime_only, cpu_xgboost_only


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    return Ensemble(Settings())


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


def test_an_ab_test_scores_each_route_with_its_version(registry: Registry) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4_000, len(FEATURES)))
    candidate = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(X, label=X[:, 0] > 0),
        num_boost_round=5,
    )
    file = registry.folder / "candidate.ubj"
    candidate.save_model(file)
    shipped = registry.manifest().revision
    registry.register("xgboost", "1.1.0", file, created="2026-11-21T00:00:00+00:00")
    registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.2})
    settings = Settings(models_dir=registry.folder)
    ensemble = Ensemble(settings)
    assert ensemble.traffic["xgboost"] == {"1.0.0": 0.8, "1.1.0": 0.2}
    assert ensemble.revision == registry.manifest().revision == shipped + 2  # register, split

    routes = [f"route-{i % 1500}" for i in range(len(X))]
    scores = ensemble.score(X, routes)
    on_candidate = assign(routes, [0.8, 0.2]) == 1
    assert 0.15 < on_candidate.mean() < 0.25
    versions = [v["xgboost"] for v in scores.version_rows]
    assert versions == ["1.1.0" if c else "1.0.0" for c in on_candidate]
    assert {v["onnx"] for v in scores.version_rows} == {"1.0.0"}
    (active, new) = ensemble.arms["xgboost"].models
    means = ensemble.means["xgboost"]
    expected = np.where(
        on_candidate, new.predict(impute(X, means)), active.predict(impute(X, means))
    )
    np.testing.assert_allclose(scores.members["xgboost"], expected, rtol=0, atol=1e-7)
    # a route keeps its version across batches; without routes the active version scores all
    again = ensemble.score(X[:100], routes[:100])
    assert [v["xgboost"] for v in again.version_rows] == versions[:100]
    assert ensemble.score(X[:10]).versions["xgboost"] == "1.0.0"

    # a promotion is a new revision that reuses the loaded candidate
    registry.promote("xgboost", "1.1.0")
    promoted = Ensemble(settings, registry.manifest(), previous=ensemble)
    assert promoted.versions["xgboost"] == "1.1.0" and promoted.xgboost is new
    assert promoted.online is ensemble.online  # the live learner keeps learning
