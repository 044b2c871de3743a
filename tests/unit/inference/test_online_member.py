"""The online member: its batched learning and vectorized scoring are river's own arithmetic, its
snapshot is a river pipeline that restores it exactly, and it learns an informative signal."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from river import linear_model, optim, preprocessing

from apex_stream.inference.online_member import OnlineLearner, SnapshotError
from apex_stream.training.metrics import roc_auc
from tests.support.events import FileOpeningPickle

NAMES = ("a", "b", "c", "d", "constant")


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features on different scales (one constant); success depends on a and b."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.normal(0, 1, n),
            rng.normal(50, 10, n),
            rng.exponential(3, n),
            rng.normal(0, 1e-3, n),
            np.full(n, 7.0),
        ]
    )
    logit = 3 * X[:, 0] - 0.3 * (X[:, 1] - 50)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return X, y


def river_scores(learner: OnlineLearner, X: np.ndarray) -> np.ndarray:
    return np.array(
        [
            learner.to_river().predict_proba_one(dict(zip(learner.features, row, strict=True)))[
                True
            ]
            for row in X.tolist()
        ]
    )


def test_untrained_learner_scores_one_half() -> None:
    learner = OnlineLearner(NAMES)
    X, _ = synthetic(5, 0)
    np.testing.assert_array_equal(learner.predict(X), 0.5)
    np.testing.assert_allclose(river_scores(learner, X), 0.5)


@pytest.mark.parametrize("learned", [1, 2, 300])
def test_vectorized_predict_is_rivers_predict_proba_one(learned: int) -> None:
    X, y = synthetic(learned + 100, 1)
    learner = OnlineLearner(NAMES, lr=0.05)
    learner.learn(X[:learned], y[:learned])
    assert learner.learned == learned

    batch = learner.predict(X[learned:])
    assert batch.shape == (100,) and batch.dtype == np.float64
    np.testing.assert_allclose(batch, river_scores(learner, X[learned:]), rtol=0, atol=1e-9)
    # the constant column has zero variance: both paths scale it to 0 instead of dividing by 0
    scaler, _ = learner.to_river().steps.values()
    assert scaler.vars["constant"] == 0.0


def test_learning_one_outcome_per_step_is_rivers_learn_one() -> None:
    X, y = synthetic(500, 7)
    river = preprocessing.StandardScaler() | linear_model.LogisticRegression(optim.SGD(0.05))
    for row, label in zip(X.tolist(), y.tolist(), strict=True):
        river.learn_one(dict(zip(NAMES, row, strict=True)), label)
    learner = OnlineLearner(NAMES, lr=0.05, chunk=1)
    for batch in np.array_split(np.arange(500), 7):  # batches of any size
        learner.learn(X[batch], y[batch])

    scaler, regression = river.steps.values()
    np.testing.assert_allclose(learner.means, [scaler.means[f] for f in NAMES], rtol=1e-12)
    np.testing.assert_allclose(learner.vars, [scaler.vars[f] for f in NAMES], rtol=1e-9)
    np.testing.assert_allclose(
        learner.weights, [regression.weights[f] for f in NAMES], rtol=1e-9, atol=1e-12
    )
    assert learner.intercept == pytest.approx(regression.intercept, rel=1e-9)
    mine = OnlineLearner.from_river(river, NAMES, "1.0.0", 500)
    np.testing.assert_allclose(learner.predict(X), mine.predict(X), rtol=1e-9)


def test_scaler_statistics_do_not_depend_on_the_chunk() -> None:
    X, y = synthetic(300, 8)
    one, many = OnlineLearner(NAMES, chunk=1), OnlineLearner(NAMES, chunk=64)
    one.learn(X, y)
    many.learn(X, y)
    np.testing.assert_allclose(one.means, many.means, rtol=1e-12)
    np.testing.assert_allclose(one.vars, many.vars, rtol=1e-12)


def test_learned_counts_every_row_of_every_batch() -> None:
    X, y = synthetic(30, 2)
    learner = OnlineLearner(NAMES)
    learner.learn(X[:10], y[:10])
    learner.learn(X[10:], y[10:])
    assert learner.learned == 30


def test_learning_in_batches_equals_learning_all_at_once() -> None:
    X, y = synthetic(120, 3)
    whole, parts = OnlineLearner(NAMES), OnlineLearner(NAMES)
    whole.learn(X, y)
    for chunk in np.array_split(np.arange(120), 5):
        parts.learn(X[chunk], y[chunk])
    # the same SGD steps when the batches split on chunk boundaries
    np.testing.assert_allclose(whole.predict(X), parts.predict(X), rtol=1e-12)


def test_snapshot_restore_round_trip() -> None:
    X, y = synthetic(400, 4)
    learner = OnlineLearner(NAMES, version="2.1.0", lr=0.02)
    learner.learn(X[:250], y[:250])

    restored = OnlineLearner.restore(learner.snapshot())
    assert restored.features == NAMES
    assert restored.version == "2.1.0"
    assert restored.learned == 250
    np.testing.assert_array_equal(restored.predict(X), learner.predict(X))

    # the optimizer and scaler state travel too: both go on learning identically
    learner.learn(X[250:], y[250:])
    restored.learn(X[250:], y[250:])
    assert restored.learned == learner.learned == 400
    np.testing.assert_array_equal(restored.predict(X), learner.predict(X))


def test_snapshot_is_independent_of_later_learning() -> None:
    X, y = synthetic(200, 5)
    learner = OnlineLearner(NAMES)
    learner.learn(X[:100], y[:100])
    blob = learner.snapshot()
    before = learner.predict(X)
    learner.learn(X[100:], y[100:])
    np.testing.assert_array_equal(OnlineLearner.restore(blob).predict(X), before)


def test_learns_an_informative_signal() -> None:
    X, y = synthetic(3000, 6)
    learner = OnlineLearner(NAMES)
    learner.learn(X[:2000], y[:2000])
    p = learner.predict(X[2000:])
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc(y[2000:], p) > 0.8
    # the sign of each informative weight is learned
    _, regression = learner.to_river().steps.values()
    assert regression.weights["a"] > 0 > regression.weights["b"]


def test_a_snapshot_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(SnapshotError, match="not an online-learner snapshot"):
        OnlineLearner.restore(pickle.dumps(FileOpeningPickle(marker)))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"weights": [0.1]}, "do not match its 5 features"),
        ({"intercept": "OVERFLOW"}, "Number out of range"),  # 1e999: infinite
        ({"vars": [-1.0] * 5}, "negative variances"),
        ({"format": "pickle"}, "not an online-learner snapshot"),
        ({"exec": "import os"}, "not an online-learner snapshot"),
    ],
)
def test_a_tampered_snapshot_is_refused(change: dict[str, object], reason: str) -> None:
    state = json.loads(OnlineLearner(NAMES).snapshot()) | change
    blob = json.dumps(state).replace('"OVERFLOW"', "1e999").encode()
    with pytest.raises(SnapshotError, match=reason):
        OnlineLearner.restore(blob)
