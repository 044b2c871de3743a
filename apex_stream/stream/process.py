"""One fetch through a worker: its opportunities scored, its outcomes joined, learning.

:class:`Process` owns the join state of every partition the worker holds and calls the scorer,
the learner and the monitor once per fetch; it does no Kafka I/O (the :class:`BatchSource`
fetches, sends what comes back in an :class:`Output` and commits), so it is tested without a
broker. Everything is per batch: decoding and validation (:func:`decode_batch`), features and
every model once, predictions encoded in one call, metrics observed once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from ..deadletter import dead_letter, split_valid
from ..events import Alert, DeadLetter, Event, Opportunity, Outcome
from ..features import FEATURES
from ..features.route_forecast import route_forecasts
from ..inference.ensemble import Scores
from ..inference.failures import Failures
from ..inference.members import MEMBERS
from ..inference.scoring import Scorer, encode_predictions, member_matrix
from ..learning.join import Joined, PartitionJoin, Scored
from ..learning.monitor import Monitor
from ..learning.outcomes import Learning
from ..metrics import (
    BATCH_SIZE,
    DEAD_LETTERS,
    HEURISTIC_SCORED,
    JOIN_WAITING,
    LATENCY,
    OUTCOMES,
    SCORED,
    SCORED_EXPIRED,
)
from ..settings import Settings

log = logging.getLogger("apex_stream.stream")


@dataclass
class Output:
    """What one fetch sends: predictions by partition, other events, a learner snapshot."""

    predictions: dict[int, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    snapshot: bytes | None = None


def _runs(partitions: np.ndarray) -> list[tuple[int, int, int]]:
    """(partition, start, stop) of each run of equal partitions (a fetch lists its records
    partition by partition)."""
    starts = np.r_[0, np.flatnonzero(np.diff(partitions)) + 1]
    stops = np.r_[starts[1:], len(partitions)]
    return list(zip(partitions[starts].tolist(), starts.tolist(), stops.tolist(), strict=True))


class ScoredRecord(msgspec.Struct):
    """The part of a stored prediction the join needs (rebuilding a partition's state)."""

    opportunity_id: str
    model_scores: dict[str, float]
    model_versions: dict[str, str]
    latency_ms: float
    timestamp: float
    features: list[float | None]


_scored_records = msgspec.json.Decoder(list[ScoredRecord])


class Process:
    """Scoring, the outcome join and learning for the partitions a worker holds."""

    def __init__(
        self, settings: Settings, scorer: Scorer, learning: Learning, monitor: Monitor
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.learning = learning
        self.monitor = monitor
        self.joins: dict[int, PartitionJoin] = {}
        #: the ensemble's member failures (alerts, ``/health``)
        self.failures = Failures(settings.alert_cooldown_s)

    def join(self, partition: int) -> PartitionJoin:
        """The join state of a partition (empty when the worker starts holding it)."""
        if partition not in self.joins:
            self.joins[partition] = PartitionJoin(
                self.settings.scored_capacity, len(FEATURES), len(MEMBERS)
            )
        return self.joins[partition]

    def drop(self, partitions: set[int]) -> None:
        """Forget the state of partitions another worker now holds."""
        for partition in partitions:
            self.joins.pop(partition, None)

    # -- a fetch ------------------------------------------------------------------------------

    def run(self, opportunities: Sequence[Any], outcomes: Sequence[Any]) -> Output:
        """Score the opportunities, then join the outcomes (so an outcome fetched with its
        opportunity joins at once) and learn from every outcome joined."""
        out = Output()
        joined = self._score(opportunities, out) if opportunities else []
        if outcomes:
            joined += self._join(outcomes, out)
        learned = Joined.concat(joined, len(FEATURES), len(MEMBERS))
        if len(learned):
            OUTCOMES.labels("yes").inc(len(learned))
            out.events += self.monitor.learned(learned)
            out.snapshot = self.learning.learn(learned)
        return out

    def _score(self, records: Sequence[Any], out: Output) -> list[Joined]:
        opportunities, kept, rejected = split_valid(records, Opportunity)
        self._reject(rejected, out)
        if not opportunities:
            return []
        try:
            X, scores, rows = self.scorer.score_routes(opportunities)
        except Exception as exc:  # a bad batch must not stop the stream
            log.exception("scoring a batch of %d failed; dead-lettering it", len(kept))
            reason = f"processing failed: {type(exc).__name__}: {exc}"
            self._reject([dead_letter(r, reason) for r in kept], out)
            return []
        out.events += self.observe(scores)
        now = time.time()
        n = len(kept)
        record_s = np.fromiter((r.timestamp for r in kept), np.float64, n) / 1000.0
        latency_ms = np.maximum(now - record_s, 0.0) * 1000.0
        forecasts = route_forecasts(opportunities, self.scorer.view.state, rows)
        payloads = encode_predictions(opportunities, X, scores, latency_ms, now, forecasts)
        member_scores, versions = member_matrix(scores)
        ids = [o.opportunity_id for o in opportunities]
        keys = list(map(str.encode, ids))
        at = np.full(n, now)
        joined = []
        for partition, lo, hi in _runs(np.fromiter((r.partition for r in kept), np.int64, n)):
            out.predictions[partition] = list(zip(keys[lo:hi], payloads[lo:hi], strict=True))
            batch = Scored(
                ids[lo:hi],
                X[lo:hi],
                member_scores[lo:hi],
                versions[lo:hi],
                latency_ms[lo:hi],
                at[lo:hi],
            )
            joined.append(self.join(partition).scored(batch))
        executed = int(scores.vote.decision.sum())
        self.monitor.scored(latency_ms, executed)
        LATENCY.observe(latency_ms / 1000.0)
        BATCH_SIZE.observe(np.array([n]))
        SCORED.labels("execute").inc(executed)
        SCORED.labels("skip").inc(n - executed)
        return joined

    def observe(self, scores: Scores) -> list[Alert]:
        """Count a scored batch's member failures and heuristic rows (the stream's or an API
        request's); the alerts that are due."""
        if scores.fallback is not None:
            HEURISTIC_SCORED.inc(int(scores.fallback.sum()))
        if not scores.failures:
            return []
        log.warning(
            "members left out of a batch of %d: %s", len(scores.vote.score), scores.failures
        )
        return self.failures.report(scores.failures, "score")

    def _join(self, records: Sequence[Any], out: Output) -> list[Joined]:
        outcomes, kept, rejected = split_valid(records, Outcome)
        self._reject(rejected, out)
        if not outcomes:
            return []
        n = len(outcomes)
        offsets = np.fromiter((r.offset for r in kept), np.int64, n)
        success = np.fromiter((o.success for o in outcomes), bool, n)
        profit = np.fromiter((o.realized_profit_usd for o in outcomes), np.float64, n)
        ids = [o.opportunity_id for o in outcomes]
        now = time.time()
        return [
            self.join(partition).outcomes(
                ids[lo:hi], success[lo:hi], profit[lo:hi], offsets[lo:hi], now
            )
            for partition, lo, hi in _runs(np.fromiter((r.partition for r in kept), np.int64, n))
        ]

    def _reject(self, letters: list[DeadLetter], out: Output) -> None:
        if not letters:
            return
        DEAD_LETTERS.labels(letters[0].source_topic).inc(len(letters))
        self.monitor.dead_lettered(len(letters))
        out.events += letters

    # -- time and rebalances ------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Forget scored features older than features_ttl_s and outcomes that waited longer
        than outcome_wait_s for their opportunity; counted in metrics."""
        settings = self.settings
        for join in self.joins.values():
            SCORED_EXPIRED.labels("ttl").inc(join.expire(now - settings.features_ttl_s))
            OUTCOMES.labels("no").inc(join.expire_outcomes(now - settings.outcome_wait_s))
            SCORED_EXPIRED.labels("evicted").inc(join.evicted)
            join.evicted = 0
        JOIN_WAITING.labels("scored").set(sum(len(j) for j in self.joins.values()))
        JOIN_WAITING.labels("outcomes").set(sum(len(j.pending) for j in self.joins.values()))

    def restore(self, partition: int, predictions: list[bytes], consumed: set[str]) -> int:
        """Rebuild a partition's scored state from its stored predictions (each carries the
        features, member scores and versions it was scored with), leaving out opportunities
        whose outcome was consumed already; returns the entries restored."""
        join = self.joins[partition] = PartitionJoin(
            self.settings.scored_capacity, len(FEATURES), len(MEMBERS)
        )
        if not predictions:
            return 0
        try:
            records = _scored_records.decode(b"[" + b",".join(predictions) + b"]")
        except msgspec.DecodeError:  # not ours to judge: restore what decodes
            records = []
            for payload in predictions:
                try:
                    records.append(msgspec.json.decode(payload, type=ScoredRecord))
                except msgspec.DecodeError:
                    continue
        width = len(FEATURES)
        records = [
            r for r in records if r.opportunity_id not in consumed and len(r.features) == width
        ]
        if not records:
            return 0
        nan = float("nan")
        join.scored(
            Scored(
                [r.opportunity_id for r in records],
                np.array([r.features for r in records], np.float64).astype(np.float32),
                np.array([[r.model_scores.get(m, nan) for m in MEMBERS] for r in records]),
                np.array([[r.model_versions.get(m, "") for m in MEMBERS] for r in records], object),
                np.array([r.latency_ms for r in records]),
                np.array([r.timestamp for r in records]),
            )
        )
        return len(records)
