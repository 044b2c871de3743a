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

Snapshots (the shipped model file, the worker's learner-state table) are JSON of plain numbers
(:class:`Snapshot`): reading one cannot run code, as reading a pickle from a Kafka topic could.
:meth:`OnlineLearner.to_river` gives the same state as a river pipeline, to continue with river.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Literal

import msgspec
import numpy as np
from river import compose, linear_model, optim, preprocessing, utils

#: Outcomes per SGD step when learning a batch (see the module docstring).
CHUNK = 8


class SnapshotError(ValueError):
    """A snapshot that is not a learner's state (malformed, tampered, another format)."""


class Snapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The learner's whole state as plain numbers, decoded with a schema."""

    format: Literal["apex-online/1"]
    features: list[str]
    version: str
    lr: float
    chunk: int
    intercept_lr: float
    counts: list[float]
    means: list[float]
    vars: list[float]
    weights: list[float]
    intercept: float
    iterations: int
    learned: int


_snapshot = msgspec.json.Decoder(Snapshot)


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

    @property
    def n_features(self) -> int:
        """The width of the rows it scores: one weight per feature."""
        return len(self.features)

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
        """The learner's whole state, for a restart (:class:`Snapshot` as JSON)."""
        return msgspec.json.encode(
            Snapshot(
                "apex-online/1",
                list(self.features),
                self.version,
                self.lr,
                self.chunk,
                self.intercept_lr,
                self.counts.tolist(),
                self.means.tolist(),
                self.vars.tolist(),
                self.weights.tolist(),
                self.intercept,
                self.iterations,
                self.learned,
            )
        )

    @classmethod
    def restore(cls, blob: bytes) -> OnlineLearner:
        """A learner from :meth:`snapshot` (callers compare ``features`` with their own); a blob
        that is not one raises :class:`SnapshotError` saying why."""
        try:
            state = _snapshot.decode(blob)
        except msgspec.DecodeError as exc:
            raise SnapshotError(f"not an online-learner snapshot: {exc}") from None
        arrays = {
            name: np.array(getattr(state, name), np.float64)
            for name in ("counts", "means", "vars", "weights")
        }
        width = len(state.features)  # (JSON numbers are finite: msgspec refuses the others)
        if any(len(a) != width for a in arrays.values()) or state.chunk < 1:
            raise SnapshotError(f"snapshot arrays do not match its {width} features")
        if (arrays["vars"] < 0).any():
            raise SnapshotError("snapshot holds negative variances")
        learner = cls(state.features, state.version, lr=state.lr, chunk=state.chunk)
        learner.intercept_lr, learner.intercept = state.intercept_lr, state.intercept
        learner.counts, learner.means = arrays["counts"], arrays["means"]
        learner.vars, learner.weights = arrays["vars"], arrays["weights"]
        learner.iterations, learner.learned = state.iterations, state.learned
        return learner


def _standardise(X: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """river's ``transform_one``: (x - mean) / std, and 0 where the variance is 0."""
    known = variances > 0
    return np.where(known, (X - means) / np.sqrt(np.where(known, variances, 1.0)), 0.0)


def _sigmoid(logit: np.ndarray) -> np.ndarray:
    p: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logit, -500, 500)))
    return p
