"""The online member: river's StandardScaler | LogisticRegression, learning one outcome at a
time and scoring whole micro-batches with numpy.

river scores one dict at a time; here the pipeline's current means, variances, weights and
intercept are read out once per batch and applied to the feature matrix, which is the same
arithmetic as ``predict_proba_one`` (a unit test holds them equal).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np
from river import compose, linear_model, optim, preprocessing


class OnlineLearner:
    """Online logistic regression over the shared feature list."""

    name = "online"

    def __init__(self, features: Sequence[str], version: str = "1.0.0", lr: float = 0.01) -> None:
        self.features = tuple(features)
        self.version = version
        self.model: compose.Pipeline = (
            preprocessing.StandardScaler()
            | linear_model.LogisticRegression(optimizer=optim.SGD(lr))
        )
        self.learned = 0

    @property
    def _steps(self) -> tuple[preprocessing.StandardScaler, linear_model.LogisticRegression]:
        scaler, regression = self.model.steps.values()
        return scaler, regression

    def learn(self, X: np.ndarray, y: np.ndarray) -> None:
        """``learn_one`` for each row in order (one SGD step per outcome, as river intends)."""
        names = self.features
        for row, label in zip(X.tolist(), y.tolist(), strict=True):
            self.model.learn_one(dict(zip(names, row, strict=True)), bool(label))
        self.learned += len(y)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability of success for every row of the batch."""
        scaler, regression = self._steps
        names = self.features
        mean = np.array([scaler.means.get(f, 0.0) for f in names])
        var = np.array([scaler.vars.get(f, 0.0) for f in names])
        weights = np.array([regression.weights.get(f, 0.0) for f in names])
        std = np.sqrt(var)
        scaled = np.where(var > 0, (X - mean) / np.where(var > 0, std, 1.0), 0.0)
        logit = scaled @ weights + regression.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -500, 500)))

    def snapshot(self) -> bytes:
        """The learner's whole state, for a restart."""
        return pickle.dumps((self.features, self.version, self.model, self.learned))

    @classmethod
    def restore(cls, blob: bytes) -> OnlineLearner:
        """A learner from :meth:`snapshot` (callers compare ``features`` with their own)."""
        features, version, model, learned = pickle.loads(blob)
        learner = cls(features, version)
        learner.model, learner.learned = model, learned
        return learner
