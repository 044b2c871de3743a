"""Score quality by hand: AUC and ECE per scorer, the hidden truth's row only where it is known,
a scorer's share of the truth's AUC, the decision rules' money against the oracle's, and the
reliability plot written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from apex_stream.features import FEATURES
from apex_stream.training.dataset import Dataset
from apex_stream.training.quality import (
    TRUTH,
    Quality,
    decision_figures,
    has_truth,
    plot_reliability,
    quality,
    share_of_truth,
)

Y = np.array([0, 0, 1, 1, 1, 0], np.float32)


def test_quality_by_hand() -> None:
    truth = np.array([0.1, 0.2, 0.9, 0.8, 0.7, 0.3])
    # positives 0.9, 0.8, 0.2 against negatives 0.1, 0.5, 0.3: 0.2 beats only 0.1, so 7 of 9
    # pairs are in order
    model = np.array([0.1, 0.5, 0.9, 0.8, 0.2, 0.3])
    figures = quality(Y, {"model": model}, truth)
    assert list(figures) == [TRUTH, "model"]
    assert figures[TRUTH].auc == 1.0
    assert figures["model"].auc == pytest.approx(7 / 9)
    # bins of 0.1 hold one row of the truth each: |0.1-0|, |0.2-0|, |0.9-1|, |0.8-1|, |0.7-1|,
    # |0.3-0| over 6 rows
    assert figures[TRUTH].ece == pytest.approx((0.1 + 0.2 + 0.1 + 0.2 + 0.3 + 0.3) / 6)
    assert share_of_truth(figures, "model") == pytest.approx(7 / 9)


def test_without_the_truth_only_the_models_are_measured() -> None:
    unknown = np.full(len(Y), np.nan)
    assert not has_truth(unknown) and not has_truth(np.empty(0))
    assert has_truth(np.full(len(Y), 0.5))
    figures = quality(Y, {"model": np.linspace(0.1, 0.9, len(Y))}, unknown)
    assert list(figures) == ["model"]
    assert math.isnan(share_of_truth(figures, "model"))
    assert math.isnan(share_of_truth({TRUTH: Quality(0.0, 0.0), "m": Quality(0.5, 0.0)}, "m"))


def test_the_reliability_plot_is_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = rng.random(2_000)
    y = (rng.random(2_000) < p).astype(np.float32)
    path = tmp_path / "reliability.png"
    plot_reliability({"held out": (y, {"ensemble": p, "shifted": p * 0.8})}, path)
    png = path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_decision_figures_by_hand() -> None:
    # quotes: (net profit, gross) -> gas = gross - net; realized profits of the outcomes
    quotes = [(30.0, 50.0), (1.0, 11.0), (100.0, 110.0), (-5.0, 10.0)]
    X = np.zeros((4, len(FEATURES)), np.float32)
    X[:, FEATURES.index("profit_usd")] = [q[0] for q in quotes]
    X[:, FEATURES.index("input_amount_thousands")] = 1.0  # 1,000 USD in
    X[:, FEATURES.index("profit_ratio")] = [1 + q[1] / 1e3 for q in quotes]
    realized = np.array([29.0, -9.0, 99.0, -6.0])
    y = np.array([1, 0, 1, 0], np.float32)
    truth = np.array([0.9, 0.2, 0.4, 0.9])
    data = Dataset(X, y, realized, np.arange(4.0), truth)
    p = np.array([0.8, 0.7, 0.3, 0.6])
    figures = decision_figures(data, p)
    # threshold 0.5: rows 0, 1, 3 -> 29 - 9 - 6
    assert figures["net_profit_threshold_gate_usd"] == pytest.approx(14.0)
    # expected profit at p: 0.8*30 - 0.2*20 = 20; 0.7*1 - 0.3*10 = -2.3; 0.3*100 - 0.7*10 = 23;
    # 0.6*-5 - 0.4*15 = -9 -> rows 0 and 2: 29 + 99
    assert figures["net_profit_expected_profit_gate_usd"] == pytest.approx(128.0)
    # the truth: 0.9*30 - 0.1*20 = 25; 0.2*1 - 0.8*10 = -7.8; 0.4*100 - 0.6*10 = 34; -6 -> 128
    assert figures["net_profit_oracle_gate_usd"] == pytest.approx(128.0)
    assert figures["expected_profit_gate_share_of_oracle"] == pytest.approx(1.0)
    # AUC of p: positives 0.8, 0.3 against negatives 0.7, 0.6 -> 2 of 4; of the truth: 0.9 ties
    # 0.9 (a half), 0.9 > 0.2, 0.4 > 0.2, 0.4 < 0.9 -> 2.5 of 4
    assert figures["auc_share_of_truth"] == pytest.approx(0.5 / 0.625)
    unknown = Dataset(X, y, realized, np.arange(4.0), np.full(4, np.nan))
    assert set(decision_figures(unknown, p)) == {
        "net_profit_threshold_gate_usd",
        "net_profit_expected_profit_gate_usd",
    }
