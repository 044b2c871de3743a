"""Training metrics: the AUC against a brute-force count over pairs (ties included), and the
threshold metrics, log loss and Brier score by hand; scikit-learn only where they are computed."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from apex_stream.training.metrics import (
    classification_metrics,
    expected_calibration_error,
    reliability,
    roc_auc,
)


def pairwise_auc(y: np.ndarray, score: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half."""
    pos, neg = score[y.astype(bool)], score[~y.astype(bool)]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_equals_the_pairwise_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    # one decimal: many ties, within and across the classes
    score = np.round(np.clip(rng.normal(0.5 + 0.15 * y, 0.2), 0, 1), 1)
    assert len(np.unique(score)) < 15
    assert roc_auc(y, score) == pytest.approx(pairwise_auc(y, score), abs=1e-12)


def test_roc_auc_on_unsorted_input_with_integer_labels() -> None:
    y = np.array([0, 1, 1, 0, 1, 0])
    score = np.array([0.3, 0.8, 0.3, 0.1, 0.5, 0.9])
    # positive 0.8 beats 0.3, 0.1 (2); 0.3 ties 0.3, beats 0.1 (1.5); 0.5 beats 0.3, 0.1 (2)
    assert roc_auc(y, score) == pytest.approx(5.5 / 9)


@pytest.mark.parametrize(
    ("score", "expected"),
    [([0.1, 0.2, 0.8, 0.9], 1.0), ([0.9, 0.8, 0.2, 0.1], 0.0), ([0.4, 0.4, 0.4, 0.4], 0.5)],
)
def test_roc_auc_extremes(score: list[float], expected: float) -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array(score)) == expected


def test_roc_auc_of_one_class_is_nan() -> None:
    assert math.isnan(roc_auc(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4])))
    assert math.isnan(roc_auc(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4])))


def test_classification_metrics_by_hand() -> None:
    y = np.array([1, 0, 1, 0, 1])
    p = np.array([0.9, 0.4, 0.3, 0.2, 0.8])
    # decided at 0.5: rows 0 and 4, both successes; row 2 is missed
    m = classification_metrics(y, p, threshold=0.5)
    expected = {
        "auc": 5 / 6,  # 0.9 and 0.8 beat both negatives, 0.3 beats only 0.2
        "logloss": -(math.log(0.9) + math.log(0.6) + math.log(0.3) + math.log(0.8) * 2) / 5,
        "brier": (0.01 + 0.16 + 0.49 + 0.04 + 0.04) / 5,
        "ece": (0.1 + 0.4 + 0.7 + 0.2 + 0.2) / 5,  # every row alone in its bin
        "accuracy": 4 / 5,
        "precision": 1.0,
        "recall": 2 / 3,
        "base_rate": 3 / 5,
        "samples": 5.0,
    }
    assert m.keys() == expected.keys()
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, rel=1e-12), name


def test_threshold_is_strict_and_nothing_decided_gives_zero_precision() -> None:
    y = np.array([1, 0, 1])
    m = classification_metrics(y, np.array([0.5, 0.5, 0.5]), threshold=0.5)
    assert m["precision"] == 0.0 and m["recall"] == 0.0
    assert m["accuracy"] == pytest.approx(1 / 3)
    m = classification_metrics(y, np.array([0.7, 0.6, 0.2]), threshold=0.65)
    assert (m["precision"], m["recall"], m["accuracy"]) == (1.0, 0.5, pytest.approx(2 / 3))


def test_certain_wrong_predictions_give_a_finite_log_loss() -> None:
    m = classification_metrics(np.array([1, 0]), np.array([0.0, 1.0]))
    assert m["logloss"] == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert m["brier"] == pytest.approx(1.0, abs=1e-6)


def test_worker_and_lifecycle_controller_import_without_scikit_learn() -> None:
    """scikit-learn is in the `train` extra: a worker never needs it, and the controller (which
    imports retraining) only when it retrains."""
    code = (
        "import sys; sys.modules['sklearn'] = None; "
        "import apex_stream.worker, apex_stream.lifecycle.controller"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_calibration_error_is_the_row_weighted_gap_per_bin() -> None:
    # bin [0.2, 0.3): 4 rows at 0.25, one success -> observed 0.25, gap 0
    # bin [0.8, 0.9): 4 rows at 0.85, two successes -> observed 0.5, gap 0.35
    p = np.array([0.25] * 4 + [0.85] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 0, 0])
    counts, predicted, observed = reliability(y, p)
    assert counts[2] == 4 and counts[8] == 4 and counts.sum() == 8
    assert predicted[8] == pytest.approx(0.85) and observed[8] == pytest.approx(0.5)
    assert np.isnan(observed[0])
    assert expected_calibration_error(y, p) == pytest.approx(0.35 * 4 / 8)
    assert expected_calibration_error(y, np.ones(8)) == pytest.approx(5 / 8)  # 1.0: last bin
