"""How good a set of scores is against outcomes and, on simulated history, against the hidden
truth: AUC and its share of the truth's AUC, calibration (ECE), the reliability plot, and the
money the decision rules make with the scores against what they make with the truth.

The simulator draws each outcome from a hidden success probability (``Dataset.truth``), so no
model can rank outcomes better than that probability does: the truth's AUC is the limit, and a
model's AUC is reported as a share of it; the oracle's expected-profit gate (the rule fed the
truth) is the profit limit of that rule. On the user's own history the truth is unknown (NaN)
and only the models' figures are given. Shared by the backtest and the training report (each
version's test metrics in the manifest).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ApexStreamError
from ..inference.decision import expected_profit, expected_profit_gate, trade_values
from .dataset import Dataset
from .metrics import CALIBRATION_BINS, expected_calibration_error, reliability, roc_auc

#: The name of the hidden truth's row among the scorers.
TRUTH = "hidden truth"


@dataclass(frozen=True)
class Quality:
    """One scorer's figures over a set of outcomes."""

    auc: float
    ece: float


def has_truth(truth: np.ndarray) -> bool:
    """Whether the history knows the hidden success probability (the simulator's does)."""
    return bool(len(truth)) and bool(np.isfinite(truth).all())


def quality(
    y: np.ndarray, scores: Mapping[str, np.ndarray], truth: np.ndarray
) -> dict[str, Quality]:
    """AUC and ECE of each scorer against the outcomes ``y``, the hidden truth's first when it
    is known."""
    scorers = {TRUTH: truth, **scores} if has_truth(truth) else dict(scores)
    return {
        name: Quality(roc_auc(y, p), expected_calibration_error(y, p))
        for name, p in scorers.items()
    }


def share_of_truth(figures: Mapping[str, Quality], name: str) -> float:
    """A scorer's AUC as a share of the hidden truth's (NaN when the truth is unknown)."""
    limit = figures.get(TRUTH)
    return figures[name].auc / limit.auc if limit and limit.auc > 0 else math.nan


def gates(
    X: np.ndarray, p: np.ndarray, *, threshold: float = 0.5, minimum: float = 0.0
) -> dict[str, np.ndarray]:
    """The rows each decision rule executes at probabilities ``p`` (a model's scores, or the
    hidden truth for the oracle): ``threshold`` (``p > threshold``) and ``expected_profit``
    (:mod:`apex_stream.inference.decision`). The one place both the training report and the
    backtest apply the rules to scores and to the truth."""
    p = np.asarray(p, dtype=np.float64)
    expected = expected_profit(p, *trade_values(X))
    return {
        "threshold": p > threshold,
        "expected_profit": expected_profit_gate(expected, minimum),
    }


def decision_figures(
    data: Dataset, p: np.ndarray, *, threshold: float = 0.5, minimum: float = 0.0
) -> dict[str, float]:
    """Net profit (the sum of realized profits) of the threshold and expected-profit gates at
    ``p`` over ``data``; where the truth is known, also the oracle expected-profit gate's and the
    expected-profit gate's share of it, and the share of the truth's AUC."""
    model = gates(data.X, p, threshold=threshold, minimum=minimum)
    figures = {
        "net_profit_threshold_gate_usd": float(data.profit_usd[model["threshold"]].sum()),
        "net_profit_expected_profit_gate_usd": float(
            data.profit_usd[model["expected_profit"]].sum()
        ),
    }
    if has_truth(data.truth):
        oracle_gate = gates(data.X, data.truth, threshold=threshold, minimum=minimum)
        oracle = float(data.profit_usd[oracle_gate["expected_profit"]].sum())
        share = figures["net_profit_expected_profit_gate_usd"] / oracle if oracle > 0 else math.nan
        figures |= {
            "net_profit_oracle_gate_usd": oracle,
            "expected_profit_gate_share_of_oracle": share,
            "auc_share_of_truth": roc_auc(data.y, p) / roc_auc(data.y, data.truth),
        }
    return figures


def matplotlib_figure() -> tuple[type[Any], type[Any]]:
    """matplotlib's ``Figure`` and Agg canvas (no display needed), imported only when a plot is
    drawn, with an error naming the extra to install when it is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ApexStreamError(
            f"{exc}: install the train extra (pip install -e '.[train]')"
        ) from None
    return Figure, FigureCanvasAgg


def plot_reliability(
    panels: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]],
    path: Path,
    bins: int = CALIBRATION_BINS,
) -> None:
    """One column per panel (title -> outcomes and scorers): observed success rate against mean
    predicted probability per bin, each scorer against the diagonal, above how many rows fall
    in each bin of the first scorer (rows in sparse bins say little)."""
    Figure, FigureCanvasAgg = matplotlib_figure()
    fig = Figure(figsize=(5.5 * len(panels), 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(panels), height_ratios=(3, 1), squeeze=False)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for column, (title, (y, scorers)) in enumerate(panels.items()):
        curve_ax, count_ax = axes[0, column], axes[1, column]
        curve_ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="perfectly calibrated")
        for k, (name, p) in enumerate(scorers.items()):
            counts, predicted, observed = reliability(y, p, bins)
            ece = expected_calibration_error(y, p, bins)
            style = {"lw": 2.2, "color": "black"} if k == 0 else {"lw": 1.2}
            filled = counts > 0
            curve_ax.plot(
                predicted[filled],
                observed[filled],
                marker="o",
                ms=3,
                label=f"{name} (ECE {ece:.3f})",
                **style,
            )
            if k == 0:
                count_ax.bar(edges[:-1], counts, width=1.0 / bins, align="edge", color="0.7")
                count_ax.set_title(f"rows per bin of {name}'s score", fontsize=9)
        curve_ax.set_title(f"Reliability: {title}")
        curve_ax.set_xlabel("mean predicted probability (bin)")
        curve_ax.set_ylabel("observed success rate")
        curve_ax.set_xlim(0, 1)
        curve_ax.set_ylim(0, 1)
        curve_ax.grid(alpha=0.3)
        curve_ax.legend(loc="upper left", fontsize=8)
        count_ax.set_xlim(0, 1)
        count_ax.set_xlabel("predicted probability")
        count_ax.set_yscale("log")
        count_ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
