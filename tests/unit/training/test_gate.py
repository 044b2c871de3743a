"""The retrain gate's decision, on hand-computed held-out figures."""

from __future__ import annotations

import math

from apex_stream.training.gate import gate


def sides(active: tuple[float, float], candidate: tuple[float, float]) -> dict:
    """A member's comparison from (AUC, log loss) of the active version and the candidate."""
    return {
        "active": {"auc": active[0], "logloss": active[1], "accuracy": 0.7},
        "candidate": {"auc": candidate[0], "logloss": candidate[1], "accuracy": 0.2},
    }


def test_a_candidate_not_worse_than_the_margins_passes() -> None:
    verdicts = gate(
        {
            "better": sides((0.80, 0.50), (0.85, 0.45)),
            "equal": sides((0.80, 0.50), (0.80, 0.50)),
            "within": sides((0.80, 0.50), (0.796, 0.504)),  # 0.004 worse on both, margin 0.005
        },
        auc_margin=0.005,
        logloss_margin=0.005,
    )
    assert verdicts == {"better": None, "equal": None, "within": None}


def test_a_candidate_worse_beyond_a_margin_is_refused_with_the_figures() -> None:
    verdicts = gate(
        {
            "auc": sides((0.831, 0.50), (0.739, 0.49)),
            "logloss": sides((0.80, 0.50), (0.81, 0.52)),
            "both": sides((0.80, 0.50), (0.70, 0.60)),
        },
        auc_margin=0.005,
        logloss_margin=0.005,
    )
    assert verdicts["auc"] == "AUC 0.7390 is 0.0920 below the active 0.8310 (margin 0.005)"
    assert verdicts["logloss"] == (
        "log loss 0.5200 is 0.0200 above the active 0.5000 (margin 0.005)"
    )
    assert verdicts["both"] == (
        "AUC 0.7000 is 0.1000 below the active 0.8000 (margin 0.005); "
        "log loss 0.6000 is 0.1000 above the active 0.5000 (margin 0.005)"
    )  # accuracy (0.2 against 0.7) is not gated: it depends on the threshold


def test_the_margins_are_what_decides() -> None:
    comparison = {"xgboost": sides((0.80, 0.50), (0.79, 0.51))}
    assert gate(comparison, auc_margin=0.02, logloss_margin=0.02) == {"xgboost": None}
    assert gate(comparison, auc_margin=0.0, logloss_margin=0.02)["xgboost"] is not None
    assert gate(comparison, auc_margin=0.02, logloss_margin=0.0)["xgboost"] is not None


def test_an_auc_that_cannot_be_computed_refuses() -> None:
    """A held-out tail of one class has no AUC: no evidence, so no traffic."""
    verdicts = gate(
        {
            "candidate": sides((0.80, 0.50), (math.nan, 0.40)),
            "active": sides((math.nan, 0.50), (0.90, 0.40)),
        },
        auc_margin=0.005,
        logloss_margin=0.005,
    )
    assert verdicts == {
        "candidate": "AUC undefined on the held-out tail (one class only)",
        "active": "AUC undefined on the held-out tail (one class only)",
    }


def test_a_log_loss_that_is_not_finite_refuses_on_either_side() -> None:
    verdicts = gate(
        {
            "candidate": sides((0.80, 0.50), (0.81, math.inf)),
            "active": sides((0.80, math.nan), (0.81, 0.40)),
        },
        auc_margin=0.005,
        logloss_margin=0.005,
    )
    assert verdicts == {
        "candidate": "log loss undefined on the held-out tail (inf against 0.5)",
        "active": "log loss undefined on the held-out tail (0.4 against nan)",
    }
