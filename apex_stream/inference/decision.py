"""The decision rules: whether to execute an opportunity given its success probability.

- **threshold** (default): the vote decides, ``score > APEX_THRESHOLD`` (for majority and
  unanimous votes, their own counting rule).
- **expected_profit**: execute when ``p * win - (1 - p) * loss > APEX_MIN_EXPECTED_PROFIT_USD``
  (0 by default): the success probability times what the trade wins beats the failure
  probability times what it loses. A trade that wins a lot can be worth a modest probability,
  and one whose gas eats its margin is not worth a good one, which a fixed threshold ignores.

``win`` is the scanner's quoted net profit (``profit_usd``: output minus input minus gas) and
``loss`` the quoted gas cost (``expected_output - input_amount - profit_usd``,
:func:`~apex_stream.features.opportunity.gas_cost_usd`, the features' own definition), both read
from the feature matrix, so the worker, the HTTP API and the backtest compute them identically.
Against the simulator (``simulator/engine.py``): a success books ``output - input - gas`` with
the output 1 bp short on average and 85-100 % of the estimated gas, which is ``profit_usd`` to
within cents; a revert books ``-gas`` for the 25-70 % of the estimated gas burnt before it
reverted. Counting the full quoted gas as the loss is the cautious choice (a revert can burn all
of it); on 92,678 simulated opportunities (seed 2027, truth as ``p``) the simulator's own
average revert gas (47.5 %) would make the rule earn 1.2 % more.

The expected profit is computed on every prediction, whichever rule decides. Its ``p`` is the
final score, so it means what it says only where the score is a probability: the weighted and
stacking votes (and the heuristic's score for rows no member answered). Majority and unanimous
scores are shares of votes, so :class:`~apex_stream.inference.voting.VotingConfig` refuses the
expected-profit rule with them.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from ..features import FEATURES
from ..features.opportunity import gas_cost_usd

Rule = Literal["threshold", "expected_profit"]
RULES: tuple[str, ...] = get_args(Rule)

_PROFIT = FEATURES.index("profit_usd")
_RATIO = FEATURES.index("profit_ratio")  # expected_output / input_amount
_AMOUNT = FEATURES.index("input_amount_thousands")


def trade_values(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What each opportunity wins if it succeeds (its quoted net profit, USD; negative when gas
    exceeds the gross) and loses if it reverts (its quoted gas cost, USD, >= 0).

    The matrix is float32, so the gas cost is exact to about 6e-8 of the input amount (0.03
    cents on a 5,000 USD trade); a missing value gives NaN."""
    win = X[:, _PROFIT].astype(np.float64)
    gross = (X[:, _RATIO].astype(np.float64) - 1.0) * X[:, _AMOUNT].astype(np.float64) * 1e3
    return win, gas_cost_usd(gross, win)


def expected_profit(p: np.ndarray, win: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """``p * win - (1 - p) * loss`` per opportunity (USD)."""
    p = np.asarray(p, dtype=np.float64)
    value: np.ndarray = p * win - (1.0 - p) * loss
    return value


def expected_profit_gate(expected: np.ndarray, minimum: float = 0.0) -> np.ndarray:
    """The expected-profit rule: execute strictly above ``minimum`` (NaN never executes, and
    neither does a trade that cannot lose or win anything)."""
    decision: np.ndarray = np.asarray(expected, dtype=np.float64) > minimum
    return decision
