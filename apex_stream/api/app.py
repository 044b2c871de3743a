"""The worker's HTTP API: a FastAPI app served by uvicorn inside the Faust worker, on its event
loop (faust-streaming's :func:`~faust.contrib.asgi.serve_asgi`), with OpenAPI at
``/openapi.json`` and Swagger UI at ``/docs`` (its assets served locally by fastapi-offline, so
the docs render without internet access).

Routes: scoring (:mod:`.predict`), model management (:mod:`.models`), status (:mod:`.status`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from faust.contrib.asgi import serve_asgi

from ..app import Pipeline
from ..features.agent import MarketView
from ..inference.control import publish
from ..inference.ensemble import Ensemble, Scores
from ..inference.failures import Failures
from ..inference.registry import Registry
from ..metrics import API_REQUESTS, API_SECONDS
from ..stream.process import Process
from ..stream.source import BatchSource
from . import models, predict, schemas, status
from .state import WorkerState

DESCRIPTION = """Scores arbitrage opportunities with the stream's features, ensemble and voting.

Speaks seed 000's REST API (`/predict/batch`, `/predict/single`, `/models/*`, `GET /`) and seed
002's engine API (`/predict` with 8 features, `/status`, `/health`, `/metrics_summary`). When the
worker has `APEX_API_TOKEN`, scoring and model routes need `Authorization: Bearer <token>`."""


LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def create_api(state: WorkerState) -> FastAPI:
    """The API over one worker."""
    api = FastAPIOffline(title="apex-stream worker API", version=status.VERSION)
    api.state.worker = state
    if state.settings.web_host in LOOPBACK:
        # on loopback, only local names: a page that rebinds its own name to 127.0.0.1 is refused
        api.add_middleware(TrustedHostMiddleware, allowed_hosts=sorted(LOOPBACK))
    for router in (predict.router, models.router, status.router):
        api.include_router(router)

    def openapi() -> dict[str, Any]:
        """FastAPI's document with the msgspec bodies' schemas added to its components."""
        if api.openapi_schema is None:
            document = get_openapi(
                title=api.title, version=api.version, description=DESCRIPTION, routes=api.routes
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                schemas.components()
            )
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override

    @api.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        # the route's template, not the raw path: any path nothing serves is "unmatched", so a
        # scan of made-up paths adds no series
        route = getattr(request.scope.get("route"), "path", "unmatched")
        API_SECONDS.labels(route).observe(time.perf_counter() - started)
        API_REQUESTS.labels(route, str(response.status_code)).inc()
        return response

    return api


def health_reasons(
    ensemble: Ensemble, failures: Failures, registry: Registry, lag: str | None, window_s: float
) -> list[str]:
    """Why a worker serves less than it should (empty: it does not): member versions that did
    not load or failed to score within ``window_s``, a manifest revision refused or newer than
    the one served, a growing consumer lag (``lag``)."""
    reasons = [f"{key} did not load: {why}" for key, why in ensemble.failures.items()]
    reasons += failures.recent(window_s)
    if failures.refused is not None:
        revision, why = failures.refused
        reasons.append(f"manifest revision {revision} refused: {why}")
    try:
        newest = registry.manifest().revision
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, /health says so
        reasons.append(f"the manifest cannot be read: {type(exc).__name__}: {exc}")
    else:
        if newest > ensemble.revision:
            reasons.append(f"serving manifest revision {ensemble.revision}, {newest} exists")
    if lag is not None:
        reasons.append(lag)
    return reasons


def attach(pipeline: Pipeline, process: Process, source: BatchSource) -> None:
    """Serve the API from the pipeline's worker (on ``APEX_WEB_HOST``:``APEX_WEB_PORT``)."""
    settings = pipeline.settings
    opportunities = settings.topic_name("opportunities")
    scorer = process.scorer

    def health() -> dict[str, Any]:
        # recovery is on faust's TableManager, not its TableManagerT interface
        recovery = pipeline.app.tables.recovery  # type: ignore[attr-defined]
        ensemble = scorer.ensemble
        reasons = health_reasons(
            ensemble,
            process.failures,
            state.registry,
            source.lag_reason(),
            settings.health_window_s,
        )
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "recovered": recovery.completed.is_set(),
            "model_versions": ensemble.versions,
            "manifest_revision": ensemble.revision,
            "traffic": ensemble.traffic,
            "providers": ensemble.providers,
            "market_tokens": len(pipeline.market),
            # Faust's partitions (prices, tables) and the batch path's (opportunities; outcomes
            # follow them)
            "assigned": sorted(
                [f"{tp.topic}:{tp.partition}" for tp in pipeline.app.assignor.assigned_actives()]
                + [f"{opportunities}:{p}" for p in source.owned]
            ),
            "join": {
                "scored_waiting": sum(len(j) for j in process.joins.values()),
                "outcomes_waiting": sum(len(j.pending) for j in process.joins.values()),
            },
        }

    async def observe(scores: Scores) -> None:
        alerts = process.observe(scores)
        if alerts:
            await source.publish(alerts)

    state = WorkerState(
        settings=settings,
        scorer=scorer,
        learning=process.learning,
        registry=Registry(settings.models_dir),
        market_view=lambda: MarketView(pipeline),
        health=health,
        publish=partial(publish, settings),
        observe=observe,
    )
    serve_asgi(
        pipeline.app,
        create_api(state),
        host=settings.web_host,
        port=settings.web_port,
        access_log=False,
    )
