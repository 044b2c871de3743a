"""The outcomes agent: joins each outcome with the features its opportunity was scored with,
teaches the online learner (one ``learn_one`` per outcome), keeps per-version performance and
feeds the drift and health monitor (alerts and a periodic metrics message).

The online learner is snapshotted to the ``learner-state`` GlobalTable every
``learner_snapshot_every`` outcomes and restored from it when the worker starts again.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from ..app import Pipeline
from ..deadletter import split_valid
from ..events import Outcome
from ..features import impute
from ..inference.agent import decode_record
from ..metrics import ONLINE_LEARNED, OUTCOMES
from .monitor import Monitor
from .online import OnlineLearner
from .performance import PerformanceBook

log = logging.getLogger("apex_stream.learning")


class Learning:
    """The online learner and the performance book of one worker."""

    def __init__(
        self, pipeline: Pipeline, learner: OnlineLearner, means: np.ndarray, threshold: float
    ) -> None:
        self.pipeline = pipeline
        self.monitor = Monitor(pipeline.settings, source=f"worker-{os.getpid()}")
        self.learner = learner
        self.means = means
        self.book = PerformanceBook(threshold)
        self.key = pipeline.settings.app_id.encode()
        self._since_snapshot = 0
        self._restored = False
        self.waiting: dict[str, tuple[Outcome, float]] = {}

    def ensure_restored(self) -> None:
        """Continue from the last snapshot in the learner-state table, once, after the
        tables have been recovered (agents call this at the top of every batch)."""
        if self._restored:
            return
        self._restored = True
        blob = self.pipeline.learner_state.get(self.key)
        if blob is not None:
            restored = OnlineLearner.restore(blob)
            if restored.features == self.learner.features:
                self.learner.model, self.learner.learned = restored.model, restored.learned
                log.info("online learner restored (%d outcomes learned)", restored.learned)

    async def learn(self, outcomes: list[Outcome]) -> int:
        """Learn from the outcomes whose scored features are known; returns how many joined.

        An outcome can overtake its opportunity (different partitions, lag): it waits in a
        bounded local buffer for up to ``outcome_wait_s`` and joins on a later batch.
        """
        table = self.pipeline.scored
        now = time.monotonic()
        waiting, self.waiting = self.waiting, {}
        waiting.update((o.opportunity_id, (o, now)) for o in outcomes)
        rows, labels, profits, member_scores, versions, latencies = [], [], [], [], [], []
        joined: list[bytes] = []
        expired = 0
        for opportunity_id, (outcome, since) in waiting.items():
            key = opportunity_id.encode()
            blob = table.get(key)
            if blob is None:
                if now - since < self.pipeline.settings.outcome_wait_s:
                    self.waiting[opportunity_id] = (outcome, since)
                else:
                    expired += 1
                continue
            record = decode_record(blob)
            joined.append(key)
            rows.append(record.features)
            labels.append(outcome.success)
            profits.append(outcome.realized_profit_usd)
            member_scores.append(record.scores)
            versions.append(record.versions)
            latencies.append(record.latency_ms)
        await self.pipeline.put_scored((key, None) for key in joined)
        OUTCOMES.labels("yes").inc(len(rows))
        OUTCOMES.labels("no").inc(expired)
        if not rows:
            return 0
        X = np.frombuffer(b"".join(rows), np.float32).reshape(len(rows), -1).astype(np.float64)
        y = np.array(labels)
        profit = np.array(profits)
        latency = np.array(latencies)
        scores = {m: np.array([s[m] for s in member_scores]) for m in member_scores[0]}
        version_of = {m: np.array([v[m] for v in versions]) for m in scores}
        for member, member_scores_ in scores.items():
            for version in np.unique(version_of[member]).tolist():
                mask = version_of[member] == version
                self.book.update(
                    member, version, member_scores_[mask], y[mask], profit[mask], latency[mask]
                )
        X = impute(X, self.means)
        await self.pipeline.send(self.monitor.learned(X, y, scores, version_of))
        self.learner.learn(X, y)
        ONLINE_LEARNED.set(self.learner.learned)
        self._since_snapshot += len(rows)
        if self._since_snapshot >= self.pipeline.settings.learner_snapshot_every:
            await self.snapshot()
        return len(rows)

    async def snapshot(self) -> None:
        await self.pipeline.put(self.pipeline.learner_state, [(self.key, self.learner.snapshot())])
        self._since_snapshot = 0


async def learn(pipeline: Pipeline, learning: Learning, messages: list[Any]) -> None:
    """Dead-letter invalid outcomes, learn from the valid ones."""
    valid, _, rejected = split_valid(messages, Outcome)
    await pipeline.dead_letter(rejected)
    await learning.learn(valid)


def attach(pipeline: Pipeline, learning: Learning) -> None:
    """Register the outcomes agent and the expiry of unjoined scored features."""
    settings = pipeline.settings

    @pipeline.app.agent(pipeline.outcomes, name="outcomes")
    async def outcomes(stream):  # noqa: ANN001, ANN202 (faust agent signature)
        async for events in stream.take_events(settings.batch_max_size, within=0.05):
            learning.ensure_restored()
            messages = [e.message for e in events]
            await pipeline.guarded(messages, learn(pipeline, learning, messages))

    @pipeline.app.timer(interval=1.0)
    async def restore_after_recovery() -> None:
        """Restore the learner as soon as the tables are recovered, even before any event."""
        if pipeline.app.tables.recovery.completed.is_set():
            learning.ensure_restored()

    @pipeline.app.timer(interval=1.0)
    async def retry_waiting() -> None:
        """Join outcomes that overtook their opportunity, also when no new outcome arrives."""
        if learning.waiting:
            await learning.learn([])

    @pipeline.app.timer(interval=settings.metrics_every_s)
    async def report() -> None:
        """Threshold alerts and this period's figures to the alerts and metrics topics."""
        monitor = learning.monitor
        await pipeline.send([*monitor.health(), monitor.metric()])

    @pipeline.app.timer(interval=settings.features_ttl_s / 4)
    async def expire_scored() -> None:
        """Drop scored features whose outcome never came (bounded lifetime)."""
        table = pipeline.scored
        horizon = time.time() - settings.features_ttl_s
        stale = [k for k, blob in list(table.items()) if decode_record(blob).timestamp < horizon]
        await pipeline.put_scored((key, None) for key in stale)
