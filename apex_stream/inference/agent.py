"""The opportunities agent: micro-batches in, predictions out.

``take_events(max, within)`` is the dynamic batcher: a batch closes when it holds
``batch_max_size`` opportunities or ``batch_max_delay_ms`` after the previous one, whichever
comes first, and every model then runs once over the whole batch. Predictions and the scored
features go to Kafka at least once (see :meth:`Pipeline.send`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from ..app import Pipeline
from ..deadletter import dead_letter, split_valid
from ..events import Opportunity, Prediction
from ..features import FEATURE_VERSION, opportunity_features
from ..features.agent import MarketView
from ..metrics import BATCH_SECONDS, BATCH_SIZE, LATENCY, SCORED
from .ensemble import Ensemble, Scores

if TYPE_CHECKING:
    from ..learning.agent import Learning
    from ..learning.monitor import Monitor


class ScoredRecord(msgspec.Struct, array_like=True):
    """What the outcomes agent needs to learn from an opportunity's outcome."""

    features: bytes  # float32 row of FEATURES
    scores: dict[str, float]
    versions: dict[str, str]
    timestamp: float
    latency_ms: float = 0.0  # of its prediction


encode_record = msgspec.msgpack.Encoder().encode
decode_record = msgspec.msgpack.Decoder(ScoredRecord).decode


class Scorer:
    """Features, ensemble and voting for a batch of opportunities (stream and HTTP API)."""

    def __init__(self, ensemble: Ensemble, view: MarketView) -> None:
        self.ensemble = ensemble
        self.view = view

    def score(self, opportunities: Sequence[Opportunity]) -> tuple[np.ndarray, Scores]:
        """The feature matrix and the ensemble's scores for a batch."""
        keys = {f"{o.chain}:{t}" for o in opportunities for t in o.tokens}
        X = opportunity_features(opportunities, self.view.refresh(keys))
        return X, self.ensemble.score(X, [o.route_id for o in opportunities])

    @staticmethod
    def predictions(
        opportunities: Sequence[Opportunity],
        X: np.ndarray,
        scores: Scores,
        received: Sequence[float],
    ) -> list[Prediction]:
        """One prediction per opportunity, with the features it was scored with."""
        voting = scores.voting
        now = time.time()
        return [
            Prediction(
                opportunity_id=o.opportunity_id,
                route_id=o.route_id,
                chain=o.chain,
                score=score,
                decision=decision,
                threshold=voting.threshold,
                strategy=voting.strategy,
                model_scores=scores.rows[i],
                model_versions=scores.version_rows[i],
                latency_ms=max(now - t0, 0.0) * 1000,
                opportunity_timestamp=o.timestamp,
                timestamp=now,
                feature_version=FEATURE_VERSION,
                features=features,  # NaN (missing) is encoded as null
            )
            for i, (o, score, decision, t0, features) in enumerate(
                zip(
                    opportunities,
                    scores.vote.score.tolist(),
                    scores.vote.decision.tolist(),
                    received,
                    X.tolist(),
                    strict=True,
                )
            )
        ]


def attach(pipeline: Pipeline, scorer: Scorer, learning: Learning) -> None:
    """Register the opportunities agent on the pipeline's app."""
    settings = pipeline.settings

    @pipeline.app.agent(pipeline.opportunities, name="opportunities")
    async def opportunities(stream):  # noqa: ANN001, ANN202 (faust agent signature)
        delay = settings.batch_max_delay_ms / 1000
        async for events in stream.take_events(settings.batch_max_size, within=delay):
            learning.ensure_restored()
            messages = [e.message for e in events]
            await pipeline.guarded(messages, process(pipeline, scorer, messages, learning.monitor))


async def process(
    pipeline: Pipeline, scorer: Scorer, messages: Sequence[Any], monitor: Monitor
) -> None:
    """Score one batch; invalid or unscorable opportunities go to the dead-letter topic."""
    opportunities, kept, rejected = split_valid(messages, Opportunity)
    await pipeline.dead_letter(rejected)
    monitor.dead_lettered(len(rejected))
    if opportunities:
        started = time.perf_counter()
        try:
            X, scores = scorer.score(opportunities)
        except Exception as exc:  # noqa: BLE001 - a bad batch must not kill the agent
            await pipeline.dead_letter(
                [dead_letter(m, f"processing failed: {type(exc).__name__}: {exc}") for m in kept]
            )
        else:
            BATCH_SECONDS.observe(time.perf_counter() - started)
            BATCH_SIZE.observe(len(opportunities))
            received = [m.timestamp or time.time() for m in kept]  # record time, seconds
            predictions = scorer.predictions(opportunities, X, scores, received)
            await pipeline.send(predictions)
            latency_ms = np.fromiter((p.latency_ms for p in predictions), np.float64)
            await remember(pipeline, opportunities, X, scores, latency_ms)
            for ms in latency_ms.tolist():
                LATENCY.observe(ms / 1000)
            executed = int(scores.vote.decision.sum())
            monitor.scored(latency_ms, executed)
            SCORED.labels("execute").inc(executed)
            SCORED.labels("skip").inc(len(predictions) - executed)


async def remember(
    pipeline: Pipeline,
    opportunities: Sequence[Opportunity],
    X: np.ndarray,
    scores: Scores,
    latency_ms: np.ndarray,
) -> None:
    """Keep each opportunity's features, member scores, versions and prediction latency until
    its outcome arrives."""
    now = time.time()
    versions = scores.version_rows
    latencies = latency_ms.tolist()
    await pipeline.put_scored(
        (
            o.opportunity_id.encode(),
            encode_record(
                ScoredRecord(X[i].tobytes(), scores.rows[i], versions[i], now, latencies[i])
            ),
        )
        for i, o in enumerate(opportunities)
    )
