"""The hidden ground truth: how likely an opportunity is to succeed when executed.

The simulator draws every outcome from this function and nothing else, so a model's quality can
be measured against it. It is a logistic in quantities a model can observe or estimate (the
opportunity's fields plus market state visible in price ticks)::

    z = b0
      + b_profit   * clip(profit_ratio * 1e4 / 10, -3, 3)   # net profit per 10 bps of input
      + b_gas      * gas_share                              # gas cost / (gas cost + gross profit)
      + b_hops     * (hops - 2)                             # each extra hop adds execution risk
      + b_vol      * clip(ln(volatility / 2), -3, 3)        # worst token vol, bps/sqrt(s)
      + b_liq      * clip(ln(liquidity_ratio / 1000), -3, 3)  # thinnest pool depth / input
      + b_conf     * (confidence - 0.5)                     # the scanner's confidence
      + b_gasprice * clip(ln(gas_level), -2, 2)             # gas price / chain's typical price
      + b_stress   * stressed                               # a route token in stressed regime
    p = clip(1 / (1 + exp(-z)), 0.02, 0.98)

with these coefficients (``BEFORE_SHIFT`` and, after a forced regime shift, ``AFTER_SHIFT``):

    =============  ======  =======
    coefficient    before  after
    =============  ======  =======
    b0              0.35    2.40
    b_profit        0.60    0.30
    b_gas          -1.20   -0.80
    b_hops         -0.60   -0.90
    b_vol          -1.00   -1.50
    b_liq           0.35    0.50
    b_conf          2.50    1.00
    b_gasprice     -0.60   -0.60
    b_stress       -0.60   -1.00
    =============  ======  =======

After the shift the scanner's confidence and the quoted profit say less, while volatility, route
length and stress say more: a model trained before the shift is miscalibrated after it.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np


@dataclass(frozen=True)
class TruthInputs:
    """Per-opportunity inputs of the ground truth; every field is an array of the same length."""

    #: ``profit_usd / input_amount`` (net of gas).
    profit_ratio: np.ndarray
    #: ``gas_cost / (gas_cost + max(expected_output - input_amount, 0))``, in [0, 1].
    gas_share: np.ndarray
    #: Number of hops (= tokens) in the route.
    hops: np.ndarray
    #: Highest current volatility among the route's tokens, bps per sqrt(second).
    volatility: np.ndarray
    #: Thinnest pool depth on the route (USD) divided by the input amount.
    liquidity_ratio: np.ndarray
    #: The scanner's ``confidence_score``.
    confidence: np.ndarray
    #: The chain's gas price divided by its typical gas price.
    gas_level: np.ndarray
    #: Whether any route token is in the stressed volatility regime.
    stressed: np.ndarray
    #: Whether the forced market-wide regime shift has happened.
    shifted: np.ndarray


@dataclass(frozen=True)
class Coefficients:
    """Weights of the logistic; see the module docstring for the formula."""

    b0: float
    b_profit: float
    b_gas: float
    b_hops: float
    b_vol: float
    b_liq: float
    b_conf: float
    b_gasprice: float
    b_stress: float


BEFORE_SHIFT = Coefficients(0.35, 0.60, -1.20, -0.60, -1.00, 0.35, 2.50, -0.60, -0.60)
AFTER_SHIFT = Coefficients(2.40, 0.30, -0.80, -0.90, -1.50, 0.50, 1.00, -0.60, -1.00)

P_MIN, P_MAX = 0.02, 0.98
_WEIGHTS_BEFORE, _WEIGHTS_AFTER = np.array(astuple(BEFORE_SHIFT)), np.array(astuple(AFTER_SHIFT))


def _design(x: TruthInputs) -> np.ndarray:
    """The formula's terms as rows, in the order of :class:`Coefficients`."""
    ratio = np.asarray(x.profit_ratio, dtype=float)
    return np.stack(
        [
            np.ones_like(ratio),
            np.clip(ratio * 1e3, -3.0, 3.0),
            np.asarray(x.gas_share, dtype=float),
            np.asarray(x.hops, dtype=float) - 2.0,
            np.clip(np.log(np.asarray(x.volatility, dtype=float) / 2.0), -3.0, 3.0),
            np.clip(np.log(np.asarray(x.liquidity_ratio, dtype=float) / 1000.0), -3.0, 3.0),
            np.asarray(x.confidence, dtype=float) - 0.5,
            np.clip(np.log(np.asarray(x.gas_level, dtype=float)), -2.0, 2.0),
            np.asarray(x.stressed, dtype=float),
        ]
    )


def success_probability(x: TruthInputs) -> np.ndarray:
    """Probability that each opportunity succeeds; pure and vectorised over the arrays of ``x``."""
    terms = _design(x)
    z = np.where(
        np.asarray(x.shifted, dtype=bool),
        _WEIGHTS_AFTER @ terms,
        _WEIGHTS_BEFORE @ terms,
    )
    p: np.ndarray = np.clip(1.0 / (1.0 + np.exp(-z)), P_MIN, P_MAX)
    return p


def concat(parts: list[TruthInputs]) -> TruthInputs:
    """Join per-substep inputs into one aligned batch."""
    if not parts:
        return TruthInputs(**{f.name: np.empty(0) for f in fields(TruthInputs)})
    return TruthInputs(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(TruthInputs)}
    )
