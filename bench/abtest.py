"""The A/B test's error rates under repeated looks, simulated: how often a fixed-sample z-test
read at every look and the sequential (mSPRT) p-value find a difference, with and without one.

    python -m bench.abtest     # a few seconds; prints a markdown table

The simulation (:func:`ever_significant`: 1,000 tests per row on an 80/20 split, looked at
every 25 candidate trades from 100 to 2,000) is the one tests/unit/lifecycle/test_abtest.py
asserts on.
"""

from __future__ import annotations

import math

import numpy as np

from apex_stream.lifecycle.abtest import Arm, sequential_p, two_proportion_z

CASES = [(0.6, 0.6, 0.05), (0.6, 0.6, 0.01), (0.6, 0.65, 0.01), (0.6, 0.7, 0.01)]


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


def main() -> None:
    print("| control | candidate | alpha | z-test at every look | sequential p |")
    print("|---|---|---|---|---|")
    for a, b, alpha in CASES:
        fixed, sequential = (ever_significant(a, b, alpha, s) for s in (False, True))
        print(f"| {a} | {b} | {alpha} | {fixed:.1%} | {sequential:.1%} |")


if __name__ == "__main__":
    main()
