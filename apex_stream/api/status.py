"""Read-only routes: seed 000's health check at ``/``, seed 002's ``/status``, ``/health`` and
``/metrics_summary``, and Prometheus ``/metrics`` (ours and seed 002's metric names)."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from . import schemas
from .schemas import Health, MetricsSummary, Root, Status, StreamFigures
from .state import Worker

router = APIRouter(tags=["status"])
VERSION = version("apex-stream")


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@router.get("/", summary="Health check (seed 000)", responses=schemas.returns(Root))
async def root(state: Worker) -> Response:
    return schemas.json_response(Root("ok", "apex-stream worker", VERSION, state.mode, "/docs"))


@router.get(
    "/health",
    summary="The worker's state: partitions, recovery, models, join",
    responses=schemas.returns(Health),
)
async def health(state: Worker) -> Response:
    # on the event loop: it reads state the stream changes
    return schemas.json_response(state.health())


@router.get("/status", summary="Engine status (seed 002)", responses=schemas.returns(Status))
async def status(state: Worker) -> Response:
    engine, ensemble = state.scorer.ensemble.engine, state.scorer.ensemble
    return schemas.json_response(
        Status(
            ai_engine="online" if engine is not None else "offline",
            mode=state.mode,
            model_type=engine.model_type if engine is not None else None,
            redis_connected=False,
            total_requests=int(_sample("ai_requests_total")),
            model_version=engine.version if engine is not None else None,
            threshold=state.settings.threshold,
            manifest_revision=ensemble.revision,
        )
    )


@router.get(
    "/metrics_summary",
    summary="Request and stream figures (seed 002)",
    responses=schemas.returns(MetricsSummary),
)
async def metrics_summary(state: Worker) -> Response:
    requests = _sample("ai_requests_total")
    latency = _sample("ai_inference_latency_ms_sum")
    scored = {
        d: _sample("apex_opportunities_scored_total", {"decision": d}) for d in ("execute", "skip")
    }
    return schemas.json_response(
        MetricsSummary(
            total_requests=int(requests),
            avg_inference_time_ms=latency / requests if requests else None,
            last_confidence=_sample("ai_prediction_confidence") if requests else None,
            mode=state.mode,
            stream=StreamFigures(
                opportunities_scored=int(sum(scored.values())),
                executable=int(scored["execute"]),
                price_ticks=int(_sample("apex_price_ticks_total")),
                online_learned=state.learning.learned,
            ),
        )
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
