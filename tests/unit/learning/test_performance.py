"""Per-version performance: hand-counted confusion at the threshold (strictly greater executes),
realized profit of the executed ones, and one record per (member, version)."""

from __future__ import annotations

import numpy as np
import pytest

from apex_stream.learning.performance import PerformanceBook, VersionPerformance

# threshold 0.5: rows 0, 2 and 4 execute (0.5 itself does not)
SCORES = np.array([0.9, 0.5, 0.7, 0.2, 0.6, 0.1])
SUCCESS = np.array([True, True, False, False, True, True])
PROFIT = np.array([10.0, 5.0, -3.0, 7.0, 4.0, 8.0])
LATENCY = np.array([4.0, 6.0, 5.0, 9.0, 3.0, 3.0])
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
    perf.update(SCORES, SUCCESS, PROFIT, LATENCY)
    summary = perf.summary()
    check(summary, EXPECTED)
    assert 0.0 <= summary["auc"] <= 1.0


def test_updates_accumulate_across_batches() -> None:
    perf = VersionPerformance(threshold=0.5)
    perf.update(SCORES[:2], SUCCESS[:2], PROFIT[:2], LATENCY[:2])
    perf.update(SCORES[2:], SUCCESS[2:], PROFIT[2:], LATENCY[2:])
    check(perf.summary(), EXPECTED)


def test_integer_labels_count_like_booleans() -> None:
    perf = VersionPerformance(threshold=0.5)
    perf.update(SCORES, SUCCESS.astype(np.int64), PROFIT, LATENCY)
    check(perf.summary(), EXPECTED)


def test_nothing_executed_realizes_nothing() -> None:
    perf = VersionPerformance(threshold=0.95)
    perf.update(SCORES, SUCCESS, PROFIT, LATENCY)
    check(
        perf.summary(),
        {"executed": 0, "realized_profit_usd": 0.0, "recall": 0.0, "accuracy": 2 / 6},
    )


def test_book_keeps_each_member_and_version_apart() -> None:
    book = PerformanceBook(threshold=0.5)
    book.update("xgboost", "1.0.0", SCORES, SUCCESS, PROFIT, LATENCY)
    # the same member's next version executes everything
    book.update("xgboost", "1.1.0", np.full(6, 0.99), SUCCESS, PROFIT, LATENCY)
    # another member with the same version string is separate too
    book.update("onnx", "1.0.0", np.full(2, 0.01), SUCCESS[:2], PROFIT[:2], LATENCY[:2])
    book.update(
        "xgboost", "1.0.0", np.array([0.8]), np.array([True]), np.array([2.0]), np.array([1.0])
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
        perf.update(scores[chunk], success[chunk], np.zeros(len(chunk)), np.zeros(len(chunk)))
    # binning to 1/1000 only merges near-ties
    assert perf.summary()["auc"] == pytest.approx(roc_auc(success, scores), abs=2e-3)
