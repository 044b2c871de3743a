"""What joined outcomes teach a worker: the online learner learns them, and every member
version's performance is booked from them.

A worker whose online learner did not load (``learner`` None) still books performance.
The online learner is snapshotted to the ``learner-state`` GlobalTable every
``learner_snapshot_every`` outcomes and restored from it when the worker starts again.
"""

from __future__ import annotations

import logging

import numpy as np

from ..features import impute
from ..inference.decision import Rule
from ..inference.members import MEMBERS
from ..inference.online_member import OnlineLearner
from ..metrics import ONLINE_LEARNED
from .join import Joined
from .performance import PerformanceBook

log = logging.getLogger("apex_stream.learning")


class Learning:
    """The online learner and the performance book of one worker."""

    def __init__(
        self,
        learner: OnlineLearner | None,
        means: np.ndarray,
        threshold: float,
        snapshot_every: int,
        *,
        rule: Rule = "threshold",
        min_expected_profit_usd: float = 0.0,
    ) -> None:
        self.learner = learner
        self.means = means
        self.book = PerformanceBook(threshold, rule, min_expected_profit_usd)
        self.snapshot_every = snapshot_every
        self._since_snapshot = 0

    def restore(self, blob: bytes) -> None:
        """Continue from a snapshot of the learner-state table (when it fits the features);
        :class:`SnapshotError` for a blob that is not one (the learner stays as it is)."""
        restored = OnlineLearner.restore(blob)
        if self.learner is not None and restored.features == self.learner.features:
            self.learner.adopt(restored)
            log.info("online learner restored (%d outcomes learned)", restored.learned)

    @property
    def learned(self) -> int:
        """Outcomes the online learner has learned (0 without one)."""
        return self.learner.learned if self.learner is not None else 0

    def learn(self, joined: Joined) -> bytes | None:
        """Book and learn a batch of joined outcomes; returns a snapshot when one is due."""
        if not len(joined):
            return None
        for j, member in enumerate(MEMBERS):
            scores, versions = joined.scores[:, j], joined.versions[:, j]
            answered = ~np.isnan(scores)  # a member that failed a row is not booked for it
            for version in set(versions[answered].tolist()):
                rows = (versions == version) & answered
                self.book.update(
                    member,
                    version,
                    scores[rows],
                    joined.success[rows],
                    joined.profit[rows],
                    joined.latency_ms[rows],
                    joined.X[rows],
                )
        if self.learner is None:
            return None
        X = impute(joined.X.astype(np.float64), self.means)
        self.learner.learn(X, joined.success)
        ONLINE_LEARNED.set(self.learner.learned)
        self._since_snapshot += len(joined)
        if self._since_snapshot < self.snapshot_every:
            return None
        self._since_snapshot = 0
        return self.learner.snapshot()
