"""The A/B test's significance test and decisions, also under repeated looks."""

from __future__ import annotations

import math

import pytest

from apex_stream.lifecycle.abtest import Arm, decide, sequential_p, two_proportion_z
from bench.abtest import ever_significant


def test_two_proportion_z_matches_a_hand_computed_case() -> None:
    # 50/100 vs 65/100: pooled 0.575, se = sqrt(0.575 * 0.425 * (1/100 + 1/100)) = 0.069911
    z, se = two_proportion_z(Arm("a", 50, 100), Arm("b", 65, 100))
    assert se == pytest.approx(0.069911, rel=1e-4)
    assert z == pytest.approx(0.15 / 0.069911, rel=1e-4)
    z_back, se_back = two_proportion_z(Arm("b", 65, 100), Arm("a", 50, 100))
    assert z_back == pytest.approx(-z) and se_back == se
    assert two_proportion_z(Arm("a", 0, 0), Arm("b", 5, 10)) == (0.0, 0.0)
    assert two_proportion_z(Arm("a", 10, 10), Arm("b", 10, 10)) == (0.0, 0.0)


def test_sequential_p_matches_a_hand_computed_case() -> None:
    # se 0.02, tau 0.05: s2 = 0.0004, t2 = 0.0025; z = 4:
    # log L = 0.5 ln(0.0004 / 0.0029) + 16 * 0.0025 / (2 * 0.0029) = -0.99050 + 6.89655
    assert sequential_p(4.0, 0.02, 0.05) == pytest.approx(math.exp(-5.90605), rel=1e-4)
    assert sequential_p(-4.0, 0.02, 0.05) == sequential_p(4.0, 0.02, 0.05)  # two-sided
    assert sequential_p(0.5, 0.02, 0.05) == 1.0  # ratio below 1
    assert sequential_p(3.0, 0.0, 0.05) == 1.0


def test_repeated_looks_keep_the_false_positive_rate_within_alpha() -> None:
    # the same win rate in both arms, looked at 77 times: a fixed-sample z-test finds a
    # "difference" in far more than 5% of the tests, the sequential p in fewer
    assert ever_significant(0.6, 0.6, 0.05, sequential=False) > 0.2
    assert ever_significant(0.6, 0.6, 0.05, sequential=True) <= 0.05
    # and a real difference of 0.1 is still found, nearly always, within 2,000 trades
    assert ever_significant(0.6, 0.7, 0.01, sequential=True) > 0.95


@pytest.mark.parametrize(
    ("control", "candidate", "action"),
    [
        (Arm("1.0.0", 500, 1000), Arm("1.1.0", 600, 1000), "promote"),  # z = 4.5, p = 1.3e-4
        (Arm("1.0.0", 600, 1000), Arm("1.1.0", 500, 1000), "rollback"),
        # z = 3.6 would pass a fixed-sample test at 0.01 (p = 3e-4), not the sequential one
        (Arm("1.0.0", 500, 1000), Arm("1.1.0", 580, 1000), "continue"),
        (Arm("1.0.0", 500, 1000), Arm("1.1.0", 510, 1000), "continue"),
        (Arm("1.0.0", 50, 100), Arm("1.1.0", 90, 100), "continue"),  # too few samples
    ],
)
def test_decisions(control: Arm, candidate: Arm, action: str) -> None:
    decision = decide(control, candidate, min_samples=200, alpha=0.01, effect_sd=0.05)
    assert decision.action == action
    assert "win rate 1.1.0" in decision.reason
