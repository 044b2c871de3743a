"""Voting strategies against hand-computed cases, config and input validation, the meta-learner's
fit, and the vectorised path agreeing with row-by-row voting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apex_stream.errors import ApexStreamError
from apex_stream.inference.voting import (
    STRATEGIES,
    StackingParams,
    VotingConfig,
    VotingError,
    fit_stacking,
    vote,
)


def arrays(**members: list[float]) -> dict[str, np.ndarray]:
    return {name: np.array(values) for name, values in members.items()}


def test_strategy_names() -> None:
    assert STRATEGIES == ("weighted", "majority", "unanimous", "stacking")


def test_weighted_default_blends_batch_models_then_online() -> None:
    scores = arrays(xgboost=[0.9, 0.3], onnx=[0.4, 0.5], online=[0.2, 0.9])
    result = vote(scores, VotingConfig())
    # row 0: batch = 0.6*0.9 + 0.4*0.4 = 0.54 + 0.16 = 0.70; final = 0.8*0.70 + 0.2*0.2 = 0.60
    # row 1: batch = 0.6*0.3 + 0.4*0.5 = 0.18 + 0.20 = 0.38; final = 0.8*0.38 + 0.2*0.9 = 0.484
    np.testing.assert_allclose(result.score, [0.60, 0.484])
    assert result.score.dtype == np.float64
    assert result.decision.dtype == np.bool_
    assert result.decision.tolist() == [True, False]


def test_weighted_without_online_is_the_batch_score() -> None:
    # batch = 0.6*0.9 + 0.4*0.4 = 0.70, and no online learner to blend in
    result = vote(arrays(xgboost=[0.9], onnx=[0.4]), VotingConfig())
    np.testing.assert_allclose(result.score, [0.70])
    assert result.decision.tolist() == [True]


def test_weighted_skips_zero_weights_and_zero_online_weight() -> None:
    config = VotingConfig(weights={"xgboost": 1.0, "onnx": 0.0}, online_weight=0.0)
    # onnx has weight 0 so it may be absent; online_weight 0 ignores the learner's 0.0
    result = vote(arrays(xgboost=[0.55], online=[0.0]), config)
    np.testing.assert_allclose(result.score, [0.55])
    assert result.decision.tolist() == [True]


def test_majority_counts_yes_votes() -> None:
    scores = arrays(xgboost=[0.9, 0.9, 0.1, 0.9], onnx=[0.6, 0.4, 0.2, 0.5], online=[0.2] * 4)
    result = vote(scores, VotingConfig(strategy="majority"))
    # yes = score > 0.5: row 0 -> 0.9, 0.6 = 2/3; row 1 -> 0.9 = 1/3; row 2 -> none = 0;
    # row 3 -> 0.9 only, since onnx's 0.5 is not above the threshold = 1/3
    np.testing.assert_allclose(result.score, [2 / 3, 1 / 3, 0.0, 1 / 3])
    assert result.decision.tolist() == [True, False, False, False]


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_majority_tie_is_neutral_and_never_executes(threshold: float) -> None:
    # one yes (0.9) and one no (0.1 at either threshold): share 1/2 = 0.5, not a strict majority
    result = vote(arrays(xgboost=[0.9], onnx=[0.1]), VotingConfig("majority", threshold))
    assert result.score.tolist() == [0.5]
    assert result.decision.tolist() == [False]


def test_unanimous_keeps_the_mean_only_on_agreement() -> None:
    scores = arrays(xgboost=[0.9, 0.1, 0.9], onnx=[0.7, 0.2, 0.7], online=[0.8, 0.3, 0.4])
    result = vote(scores, VotingConfig(strategy="unanimous"))
    # all yes: (0.9+0.7+0.8)/3 = 0.8; all no: (0.1+0.2+0.3)/3 = 0.2; online's 0.4 disagrees: 0.5
    np.testing.assert_allclose(result.score, [0.8, 0.2, 0.5])
    assert result.decision.tolist() == [True, False, False]


def test_unanimous_disagreement_never_executes_even_below_a_low_threshold() -> None:
    # 0.9 yes, 0.2 no at threshold 0.3: neutral 0.5 is above 0.3 but still must not execute
    result = vote(arrays(xgboost=[0.9], onnx=[0.2]), VotingConfig("unanimous", 0.3))
    assert result.score.tolist() == [0.5]
    assert result.decision.tolist() == [False]


def test_stacking_matches_hand_computation() -> None:
    params = StackingParams(members=("xgboost", "onnx"), coef=(2.0, 1.0), intercept=-0.5)
    scores = arrays(xgboost=[0.8, 0.2, 0.0], onnx=[0.5, 0.75, 0.5], online=[0.9, 0.9, 0.9])
    result = vote(scores, VotingConfig(strategy="stacking", stacking=params))
    # row 0: logit(0.8) = ln 4, logit(0.5) = 0 -> z = -0.5 + 2 ln 4, e^z = 16 e^-0.5
    e0 = 16 * math.exp(-0.5)
    # row 1: logit(0.2) = -ln 4, logit(0.75) = ln 3 -> e^z = e^-0.5 * 3 / 16
    e1 = math.exp(-0.5) * 3 / 16
    # row 2: 0.0 is clipped to 1e-6 -> e^z = e^-0.5 * (1e-6 / (1 - 1e-6))^2; online is ignored
    e2 = math.exp(-0.5) * (1e-6 / (1 - 1e-6)) ** 2
    expected = [e / (1 + e) for e in (e0, e1, e2)]  # 0.90658, 0.10211, ~6.1e-13
    np.testing.assert_allclose(result.score, expected, rtol=1e-9)
    assert result.decision.tolist() == [True, False, False]


def test_fit_stacking_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(7)
    members = ("xgboost", "onnx", "online")
    coef, intercept = np.array([1.5, -0.5, 0.8]), -0.3
    logits = rng.normal(size=(3, 20_000))
    scores = dict(zip(members, 1.0 / (1.0 + np.exp(-logits)), strict=True))
    labels = rng.random(20_000) < 1.0 / (1.0 + np.exp(-(intercept + coef @ logits)))

    params = fit_stacking(scores, labels, members)

    assert params.members == members
    np.testing.assert_allclose(params.coef, coef, atol=0.1)
    assert params.intercept == pytest.approx(intercept, abs=0.1)
    assert fit_stacking(scores, labels, members) == params  # deterministic


def test_fit_stacking_rejects_bad_labels() -> None:
    scores = arrays(xgboost=[0.2, 0.8])
    with pytest.raises(VotingError, match="labels must be 0/1"):
        fit_stacking(scores, np.array([0, 2]), ("xgboost",))
    with pytest.raises(VotingError, match="labels must be 0/1"):
        fit_stacking(scores, np.array([0, 1, 1]), ("xgboost",))


@pytest.mark.parametrize(
    "config",
    [
        VotingConfig(weights={"xgboost": 1.0}, online_weight=0.0),
        VotingConfig("majority", weights={"xgboost": 1.0}),
        VotingConfig("unanimous", weights={"xgboost": 1.0}),
        VotingConfig("stacking", stacking=StackingParams(("xgboost",), (1.0,), 0.0)),
    ],
    ids=lambda c: c.strategy,
)
def test_score_exactly_at_threshold_does_not_execute(config: VotingConfig) -> None:
    # a lone member at exactly 0.5 gives final 0.5 (for majority: a lone "no" vote, share 0)
    result = vote(arrays(xgboost=[0.5]), config)
    assert result.score.tolist() in ([0.5], [0.0])
    assert result.decision.tolist() == [False]


def test_strict_threshold_other_than_one_half() -> None:
    config = VotingConfig(threshold=0.7, weights={"xgboost": 1.0})
    result = vote(arrays(xgboost=[0.7, 0.7000001]), config)
    assert result.decision.tolist() == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": {"xgboost": 0.6, "onnx": 0.3}}, "must sum to 1"),
        ({"weights": {"xgboost": 1.2, "onnx": -0.2}}, "non-negative"),
        ({"weights": {}}, "non-empty"),
        ({"weights": {"xgboost": 0.8, "online": 0.2}}, "set online_weight"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"online_weight": 1.5}, "online_weight"),
        ({"strategy": "median"}, "unknown strategy"),
        ({"strategy": "stacking"}, "needs stacking params"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(VotingError, match=message):
        VotingConfig(**kwargs)  # type: ignore[arg-type]


def test_stacking_params_need_one_coefficient_per_member() -> None:
    with pytest.raises(VotingError, match="one coefficient per member"):
        StackingParams(("xgboost", "onnx"), (1.0,), 0.0)


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (arrays(xgboost=[0.9]), r"missing scores for \['onnx'\]"),
        (arrays(xgboost=[0.9, 0.8], onnx=[0.4]), "one length"),
        (arrays(xgboost=[0.9, float("inf")], onnx=[0.4, 0.4]), "NaN or inf"),
        (arrays(xgboost=[0.9], onnx=[0.4], online=[-float("inf")]), "NaN or inf"),
        ({"xgboost": np.ones((2, 2)), "onnx": np.ones((2, 2))}, "1-D"),
    ],
)
def test_bad_member_scores_are_rejected(scores: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        vote(scores, VotingConfig())
    assert isinstance(caught.value, ApexStreamError)


def test_stacking_needs_every_member_it_was_fitted_on() -> None:
    config = VotingConfig("stacking", stacking=StackingParams(("xgboost", "onnx"), (1.0, 1.0), 0))
    with pytest.raises(VotingError, match="missing scores"):
        vote(arrays(xgboost=[0.9], online=[0.9]), config)


@pytest.mark.parametrize(
    "config",
    [
        VotingConfig(),
        VotingConfig("majority"),
        VotingConfig("unanimous", threshold=0.4),
        VotingConfig("stacking", stacking=StackingParams(("xgboost", "onnx"), (1.2, 0.7), -0.1)),
    ],
    ids=lambda c: c.strategy,
)
def test_vectorised_batch_matches_row_by_row(config: VotingConfig) -> None:
    rng = np.random.default_rng(11)
    scores = {m: rng.random(10_000) for m in ("xgboost", "onnx", "online")}
    batch = vote(scores, config)
    assert batch.score.shape == batch.decision.shape == (10_000,)
    for i in (0, 1, 2, 4_999, 9_999):
        row = vote({m: s[i : i + 1] for m, s in scores.items()}, config)
        assert row.score[0] == pytest.approx(batch.score[i], rel=1e-12)
        assert row.decision[0] == batch.decision[i]


# -- failover: NaN is a member that did not answer a row --------------------------------------

NAN = float("nan")


def test_weighted_reweights_over_the_members_that_answered_each_row() -> None:
    scores = arrays(xgboost=[0.9, NAN, NAN], onnx=[0.4, 0.4, NAN], online=[0.5, 0.5, 0.3])
    result = vote(scores, VotingConfig(online_weight=0.2))
    full = 0.8 * (0.6 * 0.9 + 0.4 * 0.4) + 0.2 * 0.5
    np.testing.assert_allclose(result.score, [full, 0.8 * 0.4 + 0.2 * 0.5, 0.3])
    # the complete row scores exactly as it does in a batch where every member answered
    alone = vote(arrays(xgboost=[0.9], onnx=[0.4], online=[0.5]), VotingConfig())
    assert result.score[0] == alone.score[0]


def test_a_row_no_member_answered_scores_nan_and_never_executes() -> None:
    for strategy in ("weighted", "majority", "unanimous"):
        result = vote(arrays(xgboost=[NAN, 0.9], onnx=[NAN, 0.8]), VotingConfig(strategy))
        assert np.isnan(result.score[0]) and not result.decision[0], strategy
        assert result.decision[1], strategy


def test_majority_and_unanimous_count_only_the_members_that_answered() -> None:
    scores = arrays(xgboost=[0.9, 0.9], onnx=[NAN, 0.2], online=[0.8, NAN])
    majority = vote(scores, VotingConfig("majority"))
    np.testing.assert_allclose(majority.score, [1.0, 0.5])
    assert majority.decision.tolist() == [True, False]
    unanimous = vote(scores, VotingConfig("unanimous"))
    np.testing.assert_allclose(unanimous.score, [0.85, 0.5])
    assert unanimous.decision.tolist() == [True, False]


def test_stacking_falls_back_to_the_weighted_vote_where_a_member_is_missing() -> None:
    params = StackingParams(("xgboost", "onnx"), (1.0, 1.0), 0.0)
    config = VotingConfig("stacking", stacking=params, online_weight=0.0)
    scores = arrays(xgboost=[0.9, 0.9], onnx=[0.4, NAN])
    result = vote(scores, config)
    complete = vote(arrays(xgboost=[0.9], onnx=[0.4]), config)
    assert result.score[0] == pytest.approx(complete.score[0])
    assert result.score[1] == pytest.approx(0.9)  # xgboost alone, re-weighted to 1
