"""The A/B test's error rates under repeated looks, simulated: how often a fixed-sample z-test
read at every look and the sequential (mSPRT) p-value find a difference, with and without one.

    python bench/abtest.py     # a few seconds; prints a markdown table

The simulation is the one ``tests/unit/test_lifecycle.py`` asserts on: 1,000 tests per row on
an 80/20 split, looked at every 25 candidate trades from 100 to 2,000.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.unit.test_lifecycle import ever_significant

CASES = [(0.6, 0.6, 0.05), (0.6, 0.6, 0.01), (0.6, 0.65, 0.01), (0.6, 0.7, 0.01)]


def main() -> None:
    print("| control | candidate | alpha | z-test at every look | sequential p |")
    print("|---|---|---|---|---|")
    for a, b, alpha in CASES:
        fixed, sequential = (ever_significant(a, b, alpha, s) for s in (False, True))
        print(f"| {a} | {b} | {alpha} | {fixed:.1%} | {sequential:.1%} |")


if __name__ == "__main__":
    main()
