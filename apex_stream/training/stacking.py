"""The stacking meta-learner, fitted on out-of-fold scores.

A meta-learner fitted on scores of rows its members trained or early-stopped on learns how good
the members look there, not how good they are on rows they never saw: it leans on the most
overfit member. Out of fold, every score comes from member versions fitted only on earlier rows
(scikit-learn's ``TimeSeriesSplit``: the future never trains a model that scores the past), so
the meta-learner weighs the members as live traffic will find them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..inference.members import SPECS
from ..inference.voting import StackingParams, fit_stacking
from .dataset import Dataset

#: time-series folds: with 2, the members are refitted on the first third and the first two
#: thirds of the rows, and the meta-learner learns from their scores of the last two thirds
FOLDS = 2
#: the share of a fold's past that trains (the rest early-stops), as in the full training
TRAIN_SHARE = 0.85

#: trains every member on (train, early-stopping) rows: member name -> its model file
FitMembers = Callable[[Dataset, Dataset], Mapping[str, bytes]]


def out_of_fold(
    data: Dataset, fit: FitMembers, *, folds: int = FOLDS
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every member's scores of the rows after the first fold, each block scored by versions
    ``fit`` trained on the rows before it, and those rows' labels."""
    try:
        from sklearn.model_selection import TimeSeriesSplit
    except ImportError as exc:
        raise ImportError("stacking needs scikit-learn: pip install -e '.[train]'") from exc

    scores: dict[str, list[np.ndarray]] = {}
    labels = []
    for past, block in TimeSeriesSplit(n_splits=folds).split(data.X):
        stop = int(len(past) * TRAIN_SHARE)
        blobs = fit(data.slice(0, stop), data.slice(stop, len(past)))
        rows = data.X[block]
        for name, blob in blobs.items():
            model = SPECS[name].load(blob, "out-of-fold", "cpu", 1)
            scores.setdefault(name, []).append(model.predict(rows))
        labels.append(data.y[block])
    return {name: np.concatenate(s) for name, s in scores.items()}, np.concatenate(labels)


def fit_out_of_fold(
    data: Dataset, fit: FitMembers, members: tuple[str, ...], *, folds: int = FOLDS
) -> StackingParams:
    """The meta-learner over ``members`` fitted on their out-of-fold scores of ``data``."""
    scores, labels = out_of_fold(data, fit, folds=folds)
    return fit_stacking(scores, labels, members)
