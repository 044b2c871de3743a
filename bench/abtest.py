"""The A/B test's error rates under repeated looks, simulated: how often a fixed-sample z-test
read at every look and the sequential (mSPRT) p-value find a difference, with and without one.

    python -m bench.abtest     # under a minute; prints two markdown tables

The simulations are the ones tests/unit/lifecycle/test_abtest.py asserts on:

- win rates (the threshold rule; :func:`ever_significant`): 1,000 tests per row on an 80/20
  split, looked at every 25 candidate trades from 100 to 2,000;
- profit per opportunity (the expected-profit rule; :func:`ever_significant_profit`): 500
  tests per row on an 80/20 split, looked at every 250 candidate outcomes from 1,000 to 10,000.
  Each outcome is drawn like the simulator's under the oracle expected-profit gate (seed 2031,
  29,141 opportunities): 57 % executed; a success wins a lognormal profit (log mean 1.88, log
  sd 1.38: median 6.6 USD, a heavier tail than the simulator's, which makes the check
  stricter), a revert loses its gas (exponential, mean 1 USD); the versions differ only in
  success rate.
"""

from __future__ import annotations

import math

import numpy as np

from apex_stream.lifecycle.abtest import Arm, profit_z, sequential_p, two_proportion_z

CASES = [(0.6, 0.6, 0.05), (0.6, 0.6, 0.01), (0.6, 0.65, 0.01), (0.6, 0.7, 0.01)]
#: the expected-profit rule's test: success rates of the executed trades, alpha (the table
#: gives each one's mean profit per opportunity)
PROFIT_CASES = [
    (0.62, 0.62, 0.05),
    (0.62, 0.62, 0.01),
    (0.62, 0.67, 0.01),
    (0.62, 0.72, 0.01),
    (0.62, 0.82, 0.01),
]
EXECUTED = 0.57
PROFIT_EFFECT_SD_USD = 0.5  # the setting's default


def looks(rate_a: float, rate_b: float, runs: int, seed: int) -> tuple[np.ndarray, ...]:
    """``runs`` simulated A/B tests on an 80/20 split, looked at every 25 candidate trades from
    100 to 2,000: each look's wins and trades per arm (runs x looks arrays)."""
    rng = np.random.default_rng(seed)
    n_b = np.arange(100, 2_001, 25)
    n_a = 4 * n_b
    wins_a = np.cumsum(rng.random((runs, n_a[-1])) < rate_a, axis=1)[:, n_a - 1]
    wins_b = np.cumsum(rng.random((runs, n_b[-1])) < rate_b, axis=1)[:, n_b - 1]
    return wins_a, n_a, wins_b, n_b


def ever_significant(rate_a: float, rate_b: float, alpha: float, sequential: bool) -> float:
    """Share of simulated tests whose p fell below ``alpha`` at some look."""
    wins_a, n_a, wins_b, n_b = looks(rate_a, rate_b, runs=1_000, seed=7)
    hits = 0
    for run in range(len(wins_a)):
        for look in range(len(n_a)):
            a, b = Arm("a", wins_a[run, look], n_a[look]), Arm("b", wins_b[run, look], n_b[look])
            z, se = two_proportion_z(a, b)
            p = sequential_p(z, se, 0.05) if sequential else math.erfc(abs(z) / math.sqrt(2))
            if p < alpha:
                hits += 1
                break
    return hits / len(wins_a)


def outcome_profits(rng: np.random.Generator, n: int, success_rate: float) -> np.ndarray:
    """Realized profit of ``n`` opportunities of one arm (0 where not executed; see the module
    docstring)."""
    executed = rng.random(n) < EXECUTED
    success = rng.random(n) < success_rate
    wins = rng.lognormal(1.88, 1.38, n)
    gas = rng.exponential(1.0, n)
    profits: np.ndarray = np.where(executed, np.where(success, wins, -gas), 0.0)
    return profits


def profit_arm(name: str, profits: np.ndarray) -> Arm:
    """The arm of these outcomes (wins: executed rows that made money)."""
    executed = profits != 0.0
    return Arm(
        name,
        int((profits > 0).sum()),
        int(executed.sum()),
        len(profits),
        float(profits.sum()),
        float(np.square(profits).sum()),
    )


def ever_significant_profit(
    rate_a: float, rate_b: float, alpha: float, sequential: bool, runs: int = 500
) -> float:
    """Share of simulated profit-per-opportunity tests whose p fell below ``alpha`` at some
    look."""
    rng = np.random.default_rng(11)
    n_b = np.arange(1_000, 10_001, 250)
    hits = 0
    for _ in range(runs):
        a, b = outcome_profits(rng, 4 * n_b[-1], rate_a), outcome_profits(rng, n_b[-1], rate_b)
        for n in n_b:
            z, se = profit_z(profit_arm("a", a[: 4 * n]), profit_arm("b", b[:n]))
            if sequential:
                p = sequential_p(z, se, PROFIT_EFFECT_SD_USD)
            else:
                p = math.erfc(abs(z) / math.sqrt(2))
            if p < alpha:
                hits += 1
                break
    return hits / runs


def mean_profit(success_rate: float) -> float:
    """Expected profit per opportunity of an arm with this success rate (USD)."""
    win = math.exp(1.88 + 1.38**2 / 2)
    return EXECUTED * (success_rate * win - (1 - success_rate) * 1.0)


def main() -> None:
    print("Win rates (threshold rule)\n")
    print("| control | candidate | alpha | z-test at every look | sequential p |")
    print("|---|---|---|---|---|")
    for a, b, alpha in CASES:
        fixed, sequential = (ever_significant(a, b, alpha, s) for s in (False, True))
        print(f"| {a} | {b} | {alpha} | {fixed:.1%} | {sequential:.1%} |")
    print("\nProfit per opportunity (expected-profit rule)\n")
    print("| control (USD) | candidate (USD) | alpha | z-test at every look | sequential p |")
    print("|---|---|---|---|---|")
    for a, b, alpha in PROFIT_CASES:
        fixed, sequential = (ever_significant_profit(a, b, alpha, s) for s in (False, True))
        print(
            f"| {a} ({mean_profit(a):.2f}) | {b} ({mean_profit(b):.2f}) | {alpha} | "
            f"{fixed:.1%} | {sequential:.1%} |"
        )


if __name__ == "__main__":
    main()
