"""The shipped ensemble scoring simulated opportunities, with and without market state, and
an A/B test scoring each route with its version."""

from __future__ import annotations

import copy as copy_module
from dataclasses import replace

import numpy as np
import pytest
import xgboost as xgb

from apex_stream.features import FEATURES, MarketState, impute, opportunity_features
from apex_stream.inference.ensemble import Ensemble, voting_config
from apex_stream.inference.heuristic import HEURISTIC, heuristic
from apex_stream.inference.members import MEMBERS
from apex_stream.inference.registry import ModelError, Registry
from apex_stream.inference.routes import assign
from apex_stream.inference.voting import vote
from apex_stream.settings import Settings
from apex_stream.training.metrics import roc_auc
from tests.support.builds import cpu_onnxruntime_only, cpu_xgboost_only


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    return Ensemble(Settings())


@pytest.fixture(scope="module")
def weighted() -> Ensemble:
    return Ensemble(Settings(voting_strategy="weighted"))


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


def test_ensemble_scores_simulated_opportunities(weighted: Ensemble, simulated) -> None:
    ensemble = weighted
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


# -- failover --------------------------------------------------------------------------------


class Broken:
    """A member that raises, or answers what ``answers`` says, whatever it is asked."""

    provider = "cpu"

    def __init__(self, name: str, answers: np.ndarray | None = None) -> None:
        self.name, self.version, self.answers = name, "9.9.9", answers

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.answers is None:
            raise RuntimeError("Number of columns in data must equal to the trained model")
        return self.answers[: len(X)]


def test_the_default_vote_is_the_manifests_stacking_meta_learner(
    ensemble: Ensemble, simulated
) -> None:
    X = simulated[0][:300]
    params = Registry(Settings().models_dir).active("stacking").params
    config = ensemble.voting
    assert config.strategy == "stacking" and config.stacking is not None
    assert config.stacking.members == tuple(params["members"])
    scores = ensemble.score(X)
    m = scores.members
    logits = [
        np.log(np.clip(m[k], 1e-6, 1 - 1e-6) / (1 - np.clip(m[k], 1e-6, 1 - 1e-6)))
        for k in params["members"]
    ]
    z = params["intercept"] + sum(c * lg for c, lg in zip(params["coef"], logits, strict=True))
    np.testing.assert_allclose(scores.vote.score, 1 / (1 + np.exp(-z)), rtol=0, atol=1e-9)
    assert scores.strategies[0] == "stacking"


def test_a_manifest_without_a_meta_learner_votes_weighted_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manifest = Registry(Settings().models_dir).manifest()
    bare = replace(manifest, entries=tuple(e for e in manifest.entries if e.name != "stacking"))
    with caplog.at_level("WARNING", logger="apex_stream.inference"):
        config = voting_config(Settings(), bare)
    assert config.strategy == "weighted" and config.stacking is None
    assert "stacking vote unavailable" in caplog.text and "voting weighted instead" in caplog.text


def with_members(ensemble: Ensemble, **members: Broken) -> Ensemble:
    """A copy of ``ensemble`` (sharing its loaded models) with some members replaced."""
    copy = copy_module.copy(ensemble)
    copy.arms = dict(ensemble.arms)
    for name, member in members.items():
        copy.arms[name] = replace(ensemble.arms[name], models=(member,))
    return copy


def test_a_member_that_raises_sits_out_and_the_others_vote(weighted: Ensemble, simulated) -> None:
    ensemble = weighted
    X = simulated[0][:200]
    scores = with_members(ensemble, xgboost=Broken("xgboost")).score(X)
    assert scores.failures == {
        "xgboost@9.9.9": "RuntimeError: Number of columns in data must equal to the trained model"
    }
    assert np.isnan(scores.members["xgboost"]).all()
    assert scores.voters[0] == ["onnx", "online"] and "xgboost" not in scores.rows[0]
    assert set(scores.version_rows[0]) == {"onnx", "online"}
    expected = vote(
        {"onnx": scores.members["onnx"], "online": scores.members["online"]},
        replace(ensemble.voting, weights={"onnx": 1.0}),
    )
    np.testing.assert_allclose(scores.vote.score, expected.score)
    assert scores.strategies[0] == "weighted" and scores.fallback is None


def test_scores_outside_zero_one_are_left_out_row_by_row(ensemble: Ensemble, simulated) -> None:
    X = simulated[0][:4]
    answers = np.array([0.2, 2.0, np.nan, 0.7])
    scores = with_members(ensemble, onnx=Broken("onnx", answers)).score(X)
    assert scores.failures == {"onnx@9.9.9": "2 of 4 scores not in [0, 1]"}
    assert [("onnx" in v) for v in scores.voters] == [True, False, False, True]
    assert scores.rows[0]["onnx"] == 0.2


def test_with_no_member_answering_the_heuristic_scores(ensemble: Ensemble, simulated) -> None:
    X = simulated[0][:50]
    broken = {name: Broken(name) for name in MEMBERS}
    scores = with_members(ensemble, **broken).score(X)
    np.testing.assert_array_equal(scores.vote.score, heuristic(X))
    assert scores.strategies == [HEURISTIC] * 50 and scores.voters == [[]] * 50
    assert scores.rows == [{}] * 50 and scores.fallback is not None and scores.fallback.all()
    assert set(scores.failures) == {f"{m}@9.9.9" for m in MEMBERS}


def test_heuristic_is_the_scanners_confidence_less_the_gas_share() -> None:
    X = np.full((3, len(FEATURES)), np.nan)
    X[:, FEATURES.index("confidence_score")] = [0.9, 0.9, np.nan]
    X[:, FEATURES.index("gas_share")] = [0.25, np.nan, 0.0]
    np.testing.assert_allclose(heuristic(X), [0.675, 0.0, 0.0])


def test_a_member_file_that_does_not_load_is_unavailable_at_start(
    registry: Registry, simulated
) -> None:
    onnx = registry.active("onnx")
    (registry.folder / str(onnx.path)).write_bytes(b"corrupted")
    settings = Settings(models_dir=registry.folder)
    ensemble = Ensemble(settings)
    [(key, reason)] = ensemble.failures.items()
    assert key == "onnx@1.0.0" and "checksum mismatch" in reason
    assert ensemble.providers["onnx"] == "unavailable"
    scores = ensemble.score(simulated[0][:10])
    assert scores.voters[0] == ["xgboost", "online"] and scores.failures == {}

    # a live reload refuses a revision that adds a version which does not load...
    xgb = registry.active("xgboost")
    (registry.folder / str(xgb.path)).write_bytes(b"corrupted too")
    with pytest.raises(ModelError, match="xgboost@1.0.0 did not load: ModelError: checksum"):
        Ensemble(settings, registry.manifest(), strict=True)
    # ...but reuses the versions it serves, and tries an unavailable one again without refusing
    reloaded = Ensemble(settings, registry.manifest(), previous=ensemble, strict=True)
    assert set(reloaded.failures) == {"onnx@1.0.0"}
    assert reloaded.xgboost is ensemble.xgboost


def test_heuristic_rows_leave_the_votes_decisions_of_the_others_alone(
    ensemble: Ensemble, simulated
) -> None:
    X = simulated[0][:2]
    answers = {"xgboost": [0.4, np.nan], "onnx": [0.1, np.nan], "online": [0.2, np.nan]}
    partial = with_members(ensemble, **{m: Broken(m, np.array(a)) for m, a in answers.items()})
    partial.voting = replace(ensemble.voting, strategy="majority", threshold=0.3)
    scores = partial.score(X)
    # one yes of three: a share of 1/3 is above the threshold, yet a minority never executes
    assert scores.vote.score[0] == pytest.approx(1 / 3) and not scores.vote.decision[0]
    assert scores.strategies == ["majority", HEURISTIC]
    assert scores.vote.decision[1] == (heuristic(X)[1] > 0.3)


def test_a_candidate_that_does_not_load_gives_its_routes_to_the_active_version(
    registry: Registry,
) -> None:
    xgb = registry.active("xgboost")
    registry.register("xgboost", "1.1.0", registry.folder / str(xgb.path), created="x")
    registry.split("xgboost", {"1.0.0": 0.5, "1.1.0": 0.5})
    (registry.folder / "xgboost-1.1.0.ubj").write_bytes(b"{}")
    ensemble = Ensemble(Settings(models_dir=registry.folder))
    assert list(ensemble.failures) == ["xgboost@1.1.0"]
    assert ensemble.traffic["xgboost"] == {"1.0.0": 1.0}


def test_stacking_missing_a_member_says_the_row_was_voted_weighted(
    ensemble: Ensemble, simulated
) -> None:
    X = simulated[0][:20]
    answers = np.array([0.3] * 10 + [np.nan] * 10)
    scores = with_members(ensemble, onnx=Broken("onnx", answers)).score(X)
    assert scores.strategies == ["stacking"] * 10 + ["weighted"] * 10
    assert scores.voters[10] == ["xgboost", "online"]


def test_inputs_are_imputed_and_clipped_to_the_training_range(ensemble: Ensemble) -> None:
    arms = ensemble.arms["online"]
    width = len(FEATURES)
    low, high = np.zeros(width), np.ones(width)
    bounded = replace(arms, bounds=((low, high),))
    X = np.full((2, width), 5.0)
    X[0, 0], X[1, 1] = -3.0, np.nan
    x = bounded.inputs(X, 0)
    assert x[0, 0] == 0.0 and (x[:, 2:] == 1.0).all()
    assert x[1, 1] == min(max(arms.means[0][1], 0.0), 1.0)  # imputed, then clipped
    # versions trained before ranges were recorded score their inputs as they come
    unbounded = replace(arms, bounds=(None,))
    np.testing.assert_array_equal(unbounded.inputs(X, 0), impute(X, arms.means[0]))
