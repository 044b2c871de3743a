"""The A/B test's significance tests (win rates; profit per opportunity under the
expected-profit rule) and decisions, also under repeated looks."""

from __future__ import annotations

import math

import pytest

from apex_stream.lifecycle.abtest import Arm, decide, profit_z, sequential_p, two_proportion_z
from bench.abtest import ever_significant, ever_significant_profit

TESTS = {"min_samples": 200, "alpha": 0.01, "effect_sd": 0.05, "profit_effect_sd_usd": 0.5}


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
    decision = decide(control, candidate, rule="threshold", **TESTS)
    assert decision.action == action
    assert "win rate 1.1.0" in decision.reason


def profit_arm(version: str, profits: list[float], outcomes: int) -> Arm:
    """An arm whose executed trades realized ``profits``, among ``outcomes`` opportunities."""
    wins = sum(p > 0 for p in profits)
    return Arm(version, wins, len(profits), outcomes, sum(profits), sum(p * p for p in profits))


def test_profit_z_matches_a_hand_computed_case() -> None:
    # a: trades 4, -1 among 4 outcomes: per opportunity [4, -1, 0, 0], mean 0.75,
    #    variance (16 + 1 - 4 * 0.5625) / 3 = 4.916667
    # b: trades 6, 2, 1 among 3 outcomes: mean 3, variance (36 + 4 + 1 - 27) / 2 = 7
    # se = sqrt(4.916667 / 4 + 7 / 3) = sqrt(3.5625) = 1.887459; z = 2.25 / se
    a, b = profit_arm("a", [4.0, -1.0], 4), profit_arm("b", [6.0, 2.0, 1.0], 3)
    assert a.profit_per_opportunity == 0.75 and b.profit_per_opportunity == 3.0
    assert a.profit_variance == pytest.approx(4.916667, rel=1e-6)
    z, se = profit_z(a, b)
    assert se == pytest.approx(1.887459, rel=1e-6)
    assert z == pytest.approx(2.25 / 1.887459, rel=1e-6)
    assert profit_z(b, a) == pytest.approx((-z, se))
    assert profit_z(Arm("a", 0, 0), b) == (0.0, 0.0)
    assert profit_z(profit_arm("a", [], 5), profit_arm("b", [], 5)) == (0.0, 0.0)


def test_profit_test_keeps_the_false_positive_rate_within_alpha_under_repeated_looks() -> None:
    # skewed profits (lognormal wins, gas lost on reverts, 43 % not executed), the same in both
    # arms, looked at 37 times: the fixed-sample z-test errs far more often than alpha
    assert ever_significant_profit(0.62, 0.62, 0.05, sequential=False, runs=200) > 0.2
    assert ever_significant_profit(0.62, 0.62, 0.05, sequential=True, runs=200) <= 0.05
    # a large real difference (5.79 -> 7.84 USD per opportunity) is found nearly always
    assert ever_significant_profit(0.62, 0.82, 0.01, sequential=True, runs=200) > 0.95


def test_the_expected_profit_rule_judges_profit_not_win_rate() -> None:
    # the candidate wins less often (50 % vs 80 % of 400 trades) but makes more per opportunity:
    # 200 x 30 - 200 x 1 = 5,800 USD against 320 x 5 - 80 x 1 = 1,520 over 1,000 outcomes each
    control = profit_arm("1.0.0", [5.0] * 320 + [-1.0] * 80, 1_000)
    candidate = profit_arm("1.1.0", [30.0] * 200 + [-1.0] * 200, 1_000)
    by_profit = decide(control, candidate, rule="expected_profit", **TESTS)
    assert by_profit.action == "promote" and by_profit.z > 0
    assert "profit per opportunity 1.1.0 5.800 USD (1000 outcomes, 400 trades" in by_profit.reason
    by_win_rate = decide(control, candidate, rule="threshold", **TESTS)
    assert by_win_rate.action == "rollback" and by_win_rate.z < 0
    # too few executed trades in an arm: the test goes on whatever the profit says
    few = profit_arm("1.1.0", [30.0] * 100, 1_000)
    assert decide(control, few, rule="expected_profit", **TESTS).action == "continue"
