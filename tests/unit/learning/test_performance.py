"""Per-version performance: hand-counted confusion under the decision rule (the threshold:
strictly greater executes; the expected-profit rule: the worker's gate on the joined features),
realized profit of the executed ones, and one record per (member, version)."""

from __future__ import annotations

import numpy as np
import pytest

from apex_stream.features import FEATURES
from apex_stream.inference.members import MEMBERS
from apex_stream.learning.join import Joined
from apex_stream.learning.outcomes import Learning
from apex_stream.learning.performance import PerformanceBook, VersionPerformance

# threshold 0.5: rows 0, 2 and 4 execute (0.5 itself does not)
SCORES = np.array([0.9, 0.5, 0.7, 0.2, 0.6, 0.1])
SUCCESS = np.array([True, True, False, False, True, True])
PROFIT = np.array([10.0, 5.0, -3.0, 7.0, 4.0, 8.0])
LATENCY = np.array([4.0, 6.0, 5.0, 9.0, 3.0, 3.0])


def features(win: list[float], loss: list[float]) -> np.ndarray:
    """Feature rows whose quoted net profit is ``win`` and gas cost ``loss`` (1,000 USD in)."""
    X = np.zeros((len(win), len(FEATURES)), dtype=np.float32)
    X[:, FEATURES.index("input_amount_thousands")] = 1.0
    X[:, FEATURES.index("profit_usd")] = win
    X[:, FEATURES.index("profit_ratio")] = 1.0 + (np.array(win) + np.array(loss)) / 1_000.0
    return X


X = np.zeros((len(SCORES), len(FEATURES)), dtype=np.float32)  # the threshold rule ignores them
# TP rows 0, 4; FP row 2; FN rows 1, 5; TN row 3
EXPECTED = {
    "samples": 6,
    "executed": 3,
    "accuracy": 3 / 6,
    "precision": 2 / 3,
    "recall": 2 / 4,
    "realized_profit_usd": 10.0 - 3.0 + 4.0,
    "latency_ms_mean": 30.0 / 6,
}


def check(summary: dict[str, float], expected: dict[str, float]) -> None:
    for name, value in expected.items():
        assert summary[name] == pytest.approx(value, abs=1e-12), name


def test_hand_counted_metrics_at_the_threshold() -> None:
    perf = VersionPerformance(threshold=0.5)
    perf.update(SCORES, SUCCESS, PROFIT, LATENCY, X)
    summary = perf.summary()
    check(summary, EXPECTED)
    assert 0.0 <= summary["auc"] <= 1.0


def test_updates_accumulate_across_batches() -> None:
    perf = VersionPerformance(threshold=0.5)
    perf.update(SCORES[:2], SUCCESS[:2], PROFIT[:2], LATENCY[:2], X[:2])
    perf.update(SCORES[2:], SUCCESS[2:], PROFIT[2:], LATENCY[2:], X[2:])
    check(perf.summary(), EXPECTED)


def test_integer_labels_count_like_booleans() -> None:
    perf = VersionPerformance(threshold=0.5)
    perf.update(SCORES, SUCCESS.astype(np.int64), PROFIT, LATENCY, X)
    check(perf.summary(), EXPECTED)


def test_nothing_executed_realizes_nothing() -> None:
    perf = VersionPerformance(threshold=0.95)
    perf.update(SCORES, SUCCESS, PROFIT, LATENCY, X)
    check(
        perf.summary(),
        {"executed": 0, "realized_profit_usd": 0.0, "recall": 0.0, "accuracy": 2 / 6},
    )


def test_book_keeps_each_member_and_version_apart() -> None:
    book = PerformanceBook(threshold=0.5)
    book.update("xgboost", "1.0.0", SCORES, SUCCESS, PROFIT, LATENCY, X)
    # the same member's next version executes everything
    book.update("xgboost", "1.1.0", np.full(6, 0.99), SUCCESS, PROFIT, LATENCY, X)
    # another member with the same version string is separate too
    book.update("onnx", "1.0.0", np.full(2, 0.01), SUCCESS[:2], PROFIT[:2], LATENCY[:2], X[:2])
    book.update(
        "xgboost",
        "1.0.0",
        np.array([0.8]),
        np.array([True]),
        np.array([2.0]),
        np.array([1.0]),
        X[:1],
    )

    summary = book.summary()
    assert list(summary) == ["onnx@1.0.0", "xgboost@1.0.0", "xgboost@1.1.0"]
    check(
        summary["xgboost@1.0.0"],
        {
            "samples": 7,
            "executed": 4,
            "accuracy": 4 / 7,
            "precision": 3 / 4,
            "recall": 3 / 5,
            "realized_profit_usd": 13.0,
        },
    )
    check(
        summary["xgboost@1.1.0"],
        {
            "samples": 6,
            "executed": 6,
            "accuracy": 4 / 6,
            "precision": 4 / 6,
            "recall": 1.0,
            "realized_profit_usd": float(PROFIT.sum()),
        },
    )
    check(
        summary["onnx@1.0.0"],
        {"samples": 2, "executed": 0, "accuracy": 0.0, "recall": 0.0, "realized_profit_usd": 0.0},
    )
    assert all(perf.threshold == 0.5 for perf in book.versions.values())


def test_auc_matches_the_pairwise_definition() -> None:
    from apex_stream.training.metrics import roc_auc

    rng = np.random.default_rng(3)
    success = rng.random(5_000) < 0.4
    scores = np.clip(rng.normal(0.4 + 0.2 * success, 0.2), 0, 1)
    perf = VersionPerformance(threshold=0.5)
    for chunk in np.array_split(np.arange(5_000), 7):
        perf.update(
            scores[chunk],
            success[chunk],
            np.zeros(len(chunk)),
            np.zeros(len(chunk)),
            np.zeros((len(chunk), len(FEATURES)), np.float32),
        )
    # binning to 1/1000 only merges near-ties
    assert perf.summary()["auc"] == pytest.approx(roc_auc(success, scores), abs=2e-3)


# the expected-profit rule on the same scores: p * win - (1 - p) * loss > 0
#   row 0: 0.9 * 1 - 0.1 * 20 = -1.1   row 1: 0.5 * 10 - 0.5 * 2 = 4 (the threshold says no)
#   row 2: 0.7 * 5 - 0.3 * 1 = 3.2     row 3: 0.2 * 50 - 0.8 * 1 = 9.2
#   row 4: 0.6 * 2 - 0.4 * 5 = -0.8    row 5: 0.1 * 5 - 0.9 * 5 = -4
# executed rows 1, 2, 3: TP row 1; FP rows 2, 3; FN rows 0, 4, 5
TRADES = features([1.0, 10.0, 5.0, 50.0, 2.0, 5.0], [20.0, 2.0, 1.0, 1.0, 5.0, 5.0])
EXPECTED_PROFIT_RULE = {
    "samples": 6,
    "executed": 3,
    "accuracy": 1 / 6,
    "precision": 1 / 3,
    "recall": 1 / 4,
    "realized_profit_usd": 5.0 - 3.0 + 7.0,
    "profit_per_opportunity_usd": 9.0 / 6,
}


def test_the_expected_profit_rule_decides_what_is_booked() -> None:
    perf = VersionPerformance(threshold=0.5, rule="expected_profit")
    perf.update(SCORES, SUCCESS, PROFIT, LATENCY, TRADES)
    check(perf.summary(), EXPECTED_PROFIT_RULE)
    assert perf.realized_profit_sq_usd == 25.0 + 9.0 + 49.0
    # the minimum expected profit applies: only row 3 (9.2 USD) clears 5 USD
    strict = VersionPerformance(threshold=0.5, rule="expected_profit", min_expected_profit_usd=5.0)
    strict.update(SCORES, SUCCESS, PROFIT, LATENCY, TRADES)
    check(strict.summary(), {"executed": 1, "realized_profit_usd": 7.0})
    # a row with a missing value has no expected profit and is never executed
    missing = TRADES.copy()
    missing[1, FEATURES.index("profit_usd")] = np.nan
    nan = VersionPerformance(threshold=0.5, rule="expected_profit")
    nan.update(SCORES, SUCCESS, PROFIT, LATENCY, missing)
    check(nan.summary(), {"executed": 2, "realized_profit_usd": 4.0})
    # the threshold rule's book of the same rows is unchanged by their features
    threshold = VersionPerformance(threshold=0.5)
    threshold.update(SCORES, SUCCESS, PROFIT, LATENCY, TRADES)
    check(threshold.summary(), EXPECTED)


def test_the_worker_books_outcomes_under_its_rule() -> None:
    """Learning passes each outcome's joined features to the book, which applies the rule."""
    n = len(SCORES)
    joined = Joined(
        [f"o{i}" for i in range(n)],
        TRADES,
        np.tile(SCORES[:, None], (1, len(MEMBERS))),
        np.full((n, len(MEMBERS)), "1.0.0", dtype=object),
        LATENCY,
        SUCCESS,
        PROFIT,
    )
    means = np.zeros(len(FEATURES))
    by_rule = Learning(None, means, 0.5, 10_000, rule="expected_profit")
    by_threshold = Learning(None, means, 0.5, 10_000)
    for learning in (by_rule, by_threshold):
        assert learning.learn(joined) is None  # no learner: nothing to snapshot
    for member in MEMBERS:
        check(by_rule.book.summary()[f"{member}@1.0.0"], EXPECTED_PROFIT_RULE)
        check(by_threshold.book.summary()[f"{member}@1.0.0"], EXPECTED)
