"""Feature importance recorded with every member version: what the model leans on, in one
measure that means the same for trees, the network and the online learner."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .metrics import roc_auc

#: rows of the held-out slice the importance is measured on (enough for AUC to 3 decimals)
ROWS = 10_000


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    *,
    seed: int = 0,
    rows: int = ROWS,
) -> dict[str, float]:
    """Per feature, how much the AUC on (up to ``rows`` of) ``X`` falls when that column is
    shuffled, breaking its link with the outcome; 0 for a feature the model ignores, and
    slightly negative values are noise."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(X), size=min(rows, len(X)), replace=False))
    x, target = np.array(X[pick]), y[pick]
    reference = roc_auc(target, predict(x))
    drops = {}
    for i, name in enumerate(names):
        column = x[:, i].copy()
        x[:, i] = rng.permutation(column)
        drops[name] = reference - roc_auc(target, predict(x))
        x[:, i] = column
    return drops
