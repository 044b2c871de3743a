"""The online member: river's ``StandardScaler | LogisticRegression(SGD)``, learning from whole
outcome batches and scoring whole micro-batches with numpy.

river learns one dict at a time (``learn_one``, ~19 µs per outcome here). The worker holds the
same model's state as arrays instead and applies river's arithmetic to a batch:

- the scaler's running means and variances are Welford's recurrence written with cumulative
  sums, so every row is scaled with the statistics that include it, exactly as ``learn_one``
  does, for a batch of any size;
- the logistic regression takes one SGD step per ``chunk`` rows, each the sum of that chunk's
  per-row gradients. ``chunk=1`` is river's per-sample learning (a test holds them equal); the
  default chunk is measured against it in ``bench/online_learner.py``.

Snapshots are river pipelines (the format of the shipped model file), so the state can be
loaded and continued with river itself.
"""

from __future__ import annotations

import pickle
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from river import compose, linear_model, optim, preprocessing, utils

#: Outcomes per SGD step when learning a batch (see the module docstring).
CHUNK = 8


class OnlineLearner:
    """Online logistic regression over the shared feature list."""

    name = "online"
    provider = "cpu"  # numpy on the host

    def __init__(
        self, features: Sequence[str], version: str = "1.0.0", lr: float = 0.01, chunk: int = CHUNK
    ) -> None:
        self.features = tuple(features)
        self.version = version
        self.lr = lr
        self.chunk = chunk
        self.intercept_lr = 0.01  # river's default
        width = len(self.features)
        self.counts = np.zeros(width)
        self.means = np.zeros(width)
        self.vars = np.zeros(width)
        self.weights = np.zeros(width)
        self.intercept = 0.0
        self.iterations = 0
        self.learned = 0

    def learn(self, X: np.ndarray, y: np.ndarray) -> None:
        """Learn a batch of outcomes in order (features ``X``, successes ``y``)."""
        if not len(X):
            return
        Z = self._scale_learning(np.asarray(X, np.float64))
        target = np.asarray(y, np.float64)
        # new arrays, swapped in at the end: the API scores from a thread while the loop learns
        w, b = self.weights.copy(), self.intercept
        for start in range(0, len(Z), self.chunk):
            z, t = Z[start : start + self.chunk], target[start : start + self.chunk]
            gradient = _sigmoid(z @ w + b) - t
            w -= self.lr * (gradient @ z)
            b -= self.intercept_lr * float(gradient.sum())
        self.weights, self.intercept = w, b
        self.iterations += len(Z)
        self.learned += len(Z)

    def _scale_learning(self, X: np.ndarray) -> np.ndarray:
        """Update the running means and variances row by row (Welford), each row scaled with
        the statistics after its own update."""
        n = self.counts + np.arange(1, len(X) + 1)[:, None]
        means = self.means + np.cumsum(X - self.means, axis=0) / n
        before = np.vstack([self.means, means[:-1]])
        m2 = self.vars * self.counts + np.cumsum((X - before) * (X - means), axis=0)
        variances = m2 / n
        self.counts, self.means, self.vars = n[-1], means[-1], variances[-1]
        return _standardise(X, means, variances)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability of success for every row of the batch."""
        return _sigmoid(_standardise(X, self.means, self.vars) @ self.weights + self.intercept)

    def adopt(self, other: OnlineLearner) -> None:
        """Continue from ``other``'s state (a restored snapshot), in place: whoever scores with
        this learner sees the change."""
        self.__dict__.update(vars(other))

    def to_river(self) -> compose.Pipeline:
        """The state as the river pipeline it is."""
        scaler = preprocessing.StandardScaler()
        names = self.features
        scaler.counts = Counter(dict(zip(names, self.counts.tolist(), strict=True)))
        scaler.means = defaultdict(float, zip(names, self.means.tolist(), strict=True))
        scaler.vars = defaultdict(float, zip(names, self.vars.tolist(), strict=True))
        regression = linear_model.LogisticRegression(optimizer=optim.SGD(self.lr))
        regression._weights = utils.VectorDict(dict(zip(names, self.weights.tolist(), strict=True)))
        regression.intercept = self.intercept
        regression.optimizer.n_iterations = self.iterations
        return scaler | regression

    @classmethod
    def from_river(
        cls, model: compose.Pipeline, features: Sequence[str], version: str, learned: int
    ) -> OnlineLearner:
        """A learner continuing from a river ``StandardScaler | LogisticRegression``."""
        scaler, regression = model.steps.values()
        learner = cls(features, version, lr=regression.optimizer.learning_rate)
        names = learner.features
        learner.counts = np.array([scaler.counts.get(f, 0) for f in names], np.float64)
        learner.means = np.array([scaler.means.get(f, 0.0) for f in names])
        learner.vars = np.array([scaler.vars.get(f, 0.0) for f in names])
        weights = regression.weights
        learner.weights = np.array([weights.get(f, 0.0) for f in names])
        learner.intercept = float(regression.intercept)
        learner.intercept_lr = regression.intercept_lr.get(0)
        learner.iterations = regression.optimizer.n_iterations
        learner.learned = learned
        return learner

    def snapshot(self) -> bytes:
        """The learner's whole state, for a restart (a pickled river pipeline)."""
        return pickle.dumps((self.features, self.version, self.to_river(), self.learned))

    @classmethod
    def restore(cls, blob: bytes) -> OnlineLearner:
        """A learner from :meth:`snapshot` (callers compare ``features`` with their own)."""
        features, version, model, learned = pickle.loads(blob)
        return cls.from_river(model, features, version, learned)


def _standardise(X: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """river's ``transform_one``: (x - mean) / std, and 0 where the variance is 0."""
    known = variances > 0
    return np.where(known, (X - means) / np.sqrt(np.where(known, variances, 1.0)), 0.0)


def _sigmoid(logit: np.ndarray) -> np.ndarray:
    p: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logit, -500, 500)))
    return p
