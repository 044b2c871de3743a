"""The score of last resort: when no member answers for an opportunity, a fixed rule scores it.

Seed 004's bot falls back to a momentum rule when its ONNX model is unavailable; ours is made
for what an opportunity of ours carries: the scanner's own confidence, discounted by the share
of the gross profit that gas eats. Both are features the worker computes for every opportunity
(``confidence_score``, ``gas_share``), need no market state and no trained model, and are the
two a trader reads first. A missing value counts as no confidence, or as gas eating everything,
so an opportunity the rule knows nothing about scores 0 and never executes.

Measured against the ensemble on held-out simulated traffic: see README, "Failover".
"""

from __future__ import annotations

import numpy as np

from ..features import FEATURES

#: The name predictions carry as their ``strategy`` when this rule scored them.
HEURISTIC = "heuristic"
_CONFIDENCE = FEATURES.index("confidence_score")
_GAS_SHARE = FEATURES.index("gas_share")


def heuristic(X: np.ndarray) -> np.ndarray:
    """``confidence_score * (1 - gas_share)`` per row of the feature matrix, in [0, 1]."""
    confidence = np.nan_to_num(X[:, _CONFIDENCE].astype(np.float64), nan=0.0)
    gas_share = np.nan_to_num(X[:, _GAS_SHARE].astype(np.float64), nan=1.0)
    score: np.ndarray = np.clip(confidence, 0.0, 1.0) * (1.0 - np.clip(gas_share, 0.0, 1.0))
    return score
