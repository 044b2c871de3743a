"""Score quality by hand: AUC and ECE per scorer, the hidden truth's row only where it is known,
a scorer's share of the truth's AUC, and the reliability plot written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from apex_stream.lifecycle.quality import (
    TRUTH,
    Quality,
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
