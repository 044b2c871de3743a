"""The scoring API on the worker's web server (Faust web views).

``POST /predict/batch`` and ``POST /predict/single`` score with exactly the stream's features,
models and voting (the same :class:`Scorer`); invalid requests get 400 or 422 with the reasons.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .app import Pipeline
from .events import Opportunity
from .inference.registry import Registry
from .inference.scoring import Scorer
from .stream.process import Process
from .stream.source import BatchSource

MAX_BATCH = 10_000
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_opportunity = msgspec.json.Decoder(Opportunity)


def _respond(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(msgspec.json.encode(body), content_type="application/json", status=status)


def _parse_batch(body: bytes) -> tuple[list[Opportunity], dict[str, Any] | None, int]:
    """The opportunities of a batch request, or an error body and its status."""
    try:
        raw = _raw_list.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return [], {"error": f"expected a JSON array of opportunities: {exc}"}, 400
    if not 0 < len(raw) <= MAX_BATCH:
        return [], {"error": f"send 1 to {MAX_BATCH} opportunities"}, 400
    opportunities, errors = [], []
    for i, item in enumerate(raw):
        try:
            opportunities.append(_opportunity.decode(item))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            errors.append({"index": i, "reason": str(exc)})
    if errors:
        return [], {"error": "invalid opportunities", "invalid": errors}, 422
    return opportunities, None, 200


def _scored(scorer: Scorer, opportunities: list[Opportunity], started: float) -> dict[str, Any]:
    """The response body: per-opportunity results, versions, voting and timing."""
    t0 = time.perf_counter()
    _, scores = scorer.score(opportunities)
    t1 = time.perf_counter()
    results = [
        {
            "opportunity_id": o.opportunity_id,
            "score": score,
            "decision": decision,
            "model_scores": scores.rows[i],
            "model_versions": scores.version_rows[i],
        }
        for i, (o, score, decision) in enumerate(
            zip(
                opportunities,
                scores.vote.score.tolist(),
                scores.vote.decision.tolist(),
                strict=True,
            )
        )
    ]
    voting = scores.voting
    return {
        "predictions": results,
        "strategy": voting.strategy,
        "threshold": voting.threshold,
        "timing_ms": {
            "decode": (t0 - started) * 1e3,
            "score": (t1 - t0) * 1e3,
            "total": (time.perf_counter() - started) * 1e3,
        },
    }


def attach(pipeline: Pipeline, process: Process, source: BatchSource) -> None:
    """Register the HTTP views on the pipeline's app."""
    app = pipeline.app
    registry = Registry(pipeline.settings.models_dir)
    scorer, learning = process.scorer, process.learning
    opportunities = pipeline.settings.topic_name("opportunities")

    @app.page("/predict/batch")
    class PredictBatch(View):
        async def post(self, request: Request) -> Response:
            started = time.perf_counter()
            opportunities, error, status = _parse_batch(await request.read())
            if error is not None:
                return _respond(self, error, status)
            return _respond(self, _scored(scorer, opportunities, started))

    @app.page("/predict/single")
    class PredictSingle(View):
        async def post(self, request: Request) -> Response:
            started = time.perf_counter()
            try:
                opportunity = _opportunity.decode(await request.read())
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                return _respond(self, {"error": "invalid opportunity", "reason": str(exc)}, 422)
            body = _scored(scorer, [opportunity], started)
            prediction = body.pop("predictions")[0]
            return _respond(self, prediction | body)

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            # recovery is on faust's TableManager, not its TableManagerT interface
            recovery = pipeline.app.tables.recovery  # type: ignore[attr-defined]
            return _respond(
                self,
                {
                    "status": "ok",
                    "recovered": recovery.completed.is_set(),
                    "model_versions": scorer.ensemble.versions,
                    "manifest_revision": scorer.ensemble.revision,
                    "traffic": scorer.ensemble.traffic,
                    "providers": scorer.ensemble.providers,
                    "market_tokens": len(pipeline.market),
                    # Faust's partitions (prices, tables) and the batch path's (opportunities;
                    # outcomes follow them)
                    "assigned": sorted(
                        [
                            f"{tp.topic}:{tp.partition}"
                            for tp in pipeline.app.assignor.assigned_actives()
                        ]
                        + [f"{opportunities}:{p}" for p in source.owned]
                    ),
                    "join": {
                        "scored_waiting": sum(len(j) for j in process.joins.values()),
                        "outcomes_waiting": sum(len(j.pending) for j in process.joins.values()),
                    },
                },
            )

    @app.page("/models/summary")
    class ModelsSummary(View):
        async def get(self, request: Request) -> Response:
            return _respond(
                self,
                {
                    "active": scorer.ensemble.versions,
                    "providers": scorer.ensemble.providers,
                    "voting": {
                        "strategy": scorer.ensemble.voting.strategy,
                        "threshold": scorer.ensemble.voting.threshold,
                        "weights": scorer.ensemble.voting.weights,
                        "online_weight": scorer.ensemble.voting.online_weight,
                    },
                    "online_learned": learning.learner.learned,
                    "performance": learning.book.summary(),
                    "manifest": [
                        {
                            "model": e.key,
                            "status": e.status,
                            "traffic": e.traffic,
                            "metrics": e.metrics,
                        }
                        for e in registry.entries()
                    ],
                },
            )

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
