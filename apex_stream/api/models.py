"""Model management (seed 000's ``/models/*``): the same registry edits as ``apex-stream models``,
published to every worker for live reload.

``/models/promote-winner`` decides the member's running A/B test with the sequential test the
lifecycle controller uses (:func:`apex_stream.lifecycle.abtest.decide`: win rates under the
threshold rule, profit per opportunity under the expected-profit rule), on the outcomes this
worker has joined (its partitions) since it started, each version's executed rows decided by
the worker's rule (:mod:`apex_stream.learning.performance`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from ..inference.registry import ModelEntry, ModelError
from ..lifecycle.abtest import Arm, decide
from . import schemas
from .schemas import (
    ABTestRequest,
    ManifestChange,
    ModelVersion,
    PromoteWinnerRequest,
    PromoteWinnerResponse,
    RegisterRequest,
)
from .state import JsonBody, Worker, WorkerState, authorized

log = logging.getLogger("apex_stream.api")
router = APIRouter(prefix="/models", tags=["models"], dependencies=[Depends(authorized)])
#: One registry edit at a time in this worker: each reads the manifest and writes the next
#: revision (the CLI and the lifecycle controller edit the same folder; run one at a time)
_editing = asyncio.Lock()
S = TypeVar("S")


def _read(body: bytes, kind: type[S]) -> S:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise schemas.bad_body(exc, f"a JSON {kind.__name__}") from None


def _version_name(version: str) -> str:
    """Seed 000 writes versions ``v1.1.0``; the registry's are ``1.1.0``."""
    return version.removeprefix("v")


async def _edit(
    state: WorkerState, change: Callable[[], list[ModelEntry]], message: str
) -> ManifestChange:
    """Apply a registry edit (in a thread: it loads and copies files) and tell the workers."""
    async with _editing:
        try:
            entries = await run_in_threadpool(change)
        except ModelError as exc:
            raise HTTPException(409, str(exc)) from None
        manifest = state.registry.manifest()
    try:
        await state.publish(manifest, message)
        published = True
    except Exception:  # the manifest is written either way; workers load it when they start
        log.exception("manifest revision %d written but not published", manifest.revision)
        published = False
    return ManifestChange(
        models=[_version(e) for e in entries],
        manifest_revision=manifest.revision,
        published=published,
        message=message,
    )


def _version(e: ModelEntry) -> ModelVersion:
    return ModelVersion(e.key, e.type, e.status, e.traffic, e.metrics, e.created)


@router.get(
    "/summary",
    summary="Served versions, voting and live performance (seed 000)",
    responses=schemas.returns(schemas.ModelsSummary, 401),
)
async def summary(state: Worker) -> dict[str, Any]:
    ensemble, learning = state.scorer.ensemble, state.learning
    return {
        "active": ensemble.versions,
        "providers": ensemble.providers,
        "traffic": ensemble.traffic,
        "manifest_revision": ensemble.revision,
        "voting": {
            "strategy": ensemble.voting.strategy,
            "threshold": ensemble.voting.threshold,
            "weights": ensemble.voting.weights,
            "online_weight": ensemble.voting.online_weight,
        },
        "online_learned": learning.learned,
        "performance": learning.book.summary(),
        "manifest": [msgspec.structs.asdict(_version(e)) for e in state.registry.entries()],
    }


@router.post(
    "/register",
    summary="Register a model file as a new version (seed 000)",
    openapi_extra=schemas.body(RegisterRequest),
    responses=schemas.returns(ManifestChange, 400, 401, 409, 422),
)
async def register(raw: JsonBody, state: Worker) -> Response:
    """A candidate without traffic (start a test with ``/models/ab-test``), or with
    ``activate`` the active version at once. The file must load and score as the member's
    type on its feature list."""
    body = _read(raw, RegisterRequest)
    version = _version_name(body.version)
    path = Path(body.model_path)
    if not path.is_file():
        raise HTTPException(422, f"model_path {body.model_path!r} is not a file on the worker")

    def change() -> list[ModelEntry]:
        entry = state.registry.register(
            body.model_type,
            version,
            path,
            feature_version=body.feature_version,
            metrics=body.metrics,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if body.activate:
            entry = state.registry.promote(entry.name, entry.version)
        return [entry]

    verb = "registered and activated" if body.activate else "registered"
    return schemas.json_response(await _edit(state, change, f"{verb} {body.model_type}@{version}"))


@router.post(
    "/ab-test",
    summary="Split traffic between the active version and a candidate (seed 000)",
    openapi_extra=schemas.body(ABTestRequest),
    responses=schemas.returns(ManifestChange, 400, 401, 409, 422),
)
async def ab_test(raw: JsonBody, state: Worker) -> Response:
    """Routes are hashed to versions by ``traffic_split`` (``version_a``'s share first)."""
    body = _read(raw, ABTestRequest)
    versions = (_version_name(body.version_a), _version_name(body.version_b))
    split = dict(zip(versions, body.traffic_split, strict=True))
    return schemas.json_response(
        await _edit(
            state,
            lambda: state.registry.split(body.model_type, split),
            f"A/B test of {body.model_type}: " + ", ".join(f"{v}={w:g}" for v, w in split.items()),
        )
    )


@router.post(
    "/promote-winner",
    summary="Decide a running A/B test now (seed 000)",
    openapi_extra=schemas.body(PromoteWinnerRequest),
    responses=schemas.returns(PromoteWinnerResponse, 400, 401, 404, 409, 422),
)
async def promote_winner(raw: JsonBody, state: Worker) -> Response:
    """Promote the candidate when it wins, roll it back when it loses; 409 with the figures while
    the test cannot tell them apart yet."""
    body = _read(raw, PromoteWinnerRequest)
    name, settings = body.model_type, state.settings
    manifest = state.registry.manifest()
    candidates = [e for e in manifest.testing() if e.name == name]
    if len(candidates) != 1:
        raise HTTPException(409, f"{name} has {len(candidates)} candidates under test, need 1")
    control, candidate = manifest.active(name), candidates[0]
    arms = [_arm(state, name, e.version) for e in (control, candidate)]
    decision = decide(
        *arms,
        min_samples=settings.ab_min_samples,
        alpha=settings.ab_alpha,
        effect_sd=settings.ab_effect_sd,
        rule=settings.decision_rule,
        profit_effect_sd_usd=settings.ab_profit_effect_sd_usd,
    )
    if decision.action == "continue":
        raise HTTPException(409, f"not decided yet: {decision.reason}")
    registry = state.registry

    def change() -> list[ModelEntry]:
        if decision.action == "promote":
            return [registry.promote(name, candidate.version)]
        return [registry.rollback(name)]

    edited = await _edit(state, change, f"A/B test of {name}: {decision.action}")
    return schemas.json_response(
        PromoteWinnerResponse(
            **msgspec.structs.asdict(edited),
            action=decision.action,
            z=decision.z,
            p_value=decision.p_value,
        )
    )


def _arm(state: WorkerState, member: str, version: str) -> Arm:
    """Outcomes of a version under the worker's decision rule, from its performance book."""
    perf = state.learning.book.versions.get((member, version))
    if perf is None:
        return Arm(version, 0, 0)
    return Arm(
        version,
        perf.tp,
        perf.tp + perf.fp,
        perf.tp + perf.fp + perf.tn + perf.fn,
        perf.realized_profit_usd,
        perf.realized_profit_sq_usd,
    )
