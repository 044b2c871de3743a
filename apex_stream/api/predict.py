"""Scoring routes: seed 000's ``/predict/batch`` and ``/predict/single`` (the stream's features,
models and voting, through the same :class:`Scorer`), and seed 002's 8-feature ``/predict``.

A batch request is decoded, scored and encoded in a worker thread, two requests at a time: the
models release the GIL while they score, so a 10,000-opportunity request does not stall the
stream sharing this event loop. Opportunities are read in every form the stream accepts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
import numpy as np
from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, HTTPException, Response

from ..events import Opportunity
from ..inference.engine import FeatureVectorError, engine_vector
from ..inference.ensemble import Scores
from ..inference.scoring import recommend
from ..inputs import OpportunityInput, read_batch
from ..metrics import AI_CONFIDENCE, AI_LATENCY, AI_REQUESTS
from . import schemas
from .schemas import (
    BatchRequest,
    BatchResponse,
    FeaturesRequest,
    FeaturesResponse,
    GpuUse,
    ScoredOpportunity,
    SingleRequest,
    SingleResponse,
    Timing,
)
from .state import JsonBody, Worker, WorkerState, authorized

#: The most opportunities one request may carry.
MAX_BATCH = 10_000

router = APIRouter(tags=["scoring"], dependencies=[Depends(authorized)])
#: Requests scored at once: more would only share the same cores with the stream (and its GIL)
_scoring = CapacityLimiter(2)


class _RawBatch(msgspec.Struct, forbid_unknown_fields=True):
    opportunities: list[msgspec.Raw]
    threshold: schemas.Threshold | None = None
    use_gpu: bool = False


class _RawSingle(msgspec.Struct, forbid_unknown_fields=True):
    opportunity: msgspec.Raw
    threshold: schemas.Threshold | None = None
    use_gpu: bool = False


_batch = msgspec.json.Decoder(_RawBatch | list[msgspec.Raw])
_single = msgspec.json.Decoder(_RawSingle)
_keys = msgspec.json.Decoder(dict[str, msgspec.Raw])
_features = msgspec.json.Decoder(FeaturesRequest)


def _opportunities(
    raw: list[msgspec.Raw], received: float, where: list[str | int] | None = None
) -> list[Opportunity]:
    """Every opportunity of a request, in any form the stream reads (a missing timestamp is the
    time the request arrived), or 422 listing each invalid one with its reason and location
    (``where``, else its place in the batch)."""
    if not raw:
        raise HTTPException(422, "send at least one opportunity")
    if len(raw) > MAX_BATCH:
        raise HTTPException(413, f"at most {MAX_BATCH} opportunities per request")
    batch = read_batch(raw, Opportunity, lambda _: received)
    if batch.rejected:
        raise HTTPException(
            422,
            [
                schemas.invalid(where or ["body", "opportunities", i], reason)
                for i, reason in batch.rejected
            ],
        )
    return batch.events


def _score(
    state: WorkerState,
    opportunities: list[Opportunity],
    threshold: float | None,
    use_gpu: bool,
    started: float,
) -> tuple[list[ScoredOpportunity], Scores, GpuUse, Timing]:
    """Score a request's opportunities; seed 000's fields and ours for each."""
    decoded = time.perf_counter()
    scorer = state.scorer_for_request()
    _, scores = scorer.score(opportunities, threshold)
    scored = time.perf_counter()
    n = len(opportunities)
    per_row_ms = (scored - decoded) * 1e3 / n
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    recommendation, confidence = recommend(scores.vote.score, scores.vote.decision)
    rows = [
        ScoredOpportunity(
            route_id=o.route_id,
            prediction_score=score,
            should_execute=decision,
            model_version_xgb=versions.get("xgboost"),
            model_version_onnx=versions.get("onnx"),
            inference_time_ms=per_row_ms,
            timestamp=stamp,
            opportunity_id=o.opportunity_id,
            chain=o.chain,
            score=score,
            decision=decision,
            recommendation=advice,
            confidence=sure,
            model_scores=member_scores,
            model_versions=versions,
            voters=voters,
            strategy=strategy,
            expected_profit_usd=expected if expected == expected else None,  # NaN != NaN
        )
        for (
            o,
            score,
            decision,
            advice,
            sure,
            member_scores,
            versions,
            voters,
            strategy,
            expected,
        ) in zip(
            opportunities,
            scores.vote.score.tolist(),
            scores.vote.decision.tolist(),
            recommendation,
            confidence,
            scores.rows,
            scores.version_rows,
            scores.voters,
            scores.strategies,
            scores.expected_profit_usd.tolist(),
            strict=True,
        )
    ]
    providers = scorer.ensemble.providers
    gpu = GpuUse(
        requested=use_gpu,
        used=any("cuda" in p.lower() or "tensorrt" in p.lower() for p in providers.values()),
        providers=providers,
    )
    timing = Timing(
        decode_ms=(decoded - started) * 1e3,
        score_ms=(scored - decoded) * 1e3,
        total_ms=(time.perf_counter() - started) * 1e3,
    )
    return rows, scores, gpu, timing


def _predict_batch(
    state: WorkerState, body: bytes, received: float, started: float
) -> tuple[bytes, Scores]:
    try:
        request = _batch.decode(body)
    except msgspec.DecodeError as exc:
        raise schemas.bad_body(
            exc, "seed 000's {opportunities, threshold, use_gpu} or an array"
        ) from None
    if isinstance(request, list):
        request = _RawBatch(request)
    opportunities = _opportunities(request.opportunities, received)
    rows, scores, gpu, timing = _score(
        state, opportunities, request.threshold, request.use_gpu, started
    )
    answer = schemas.encode(
        BatchResponse(
            predictions=rows,
            total_opportunities=len(rows),
            executable_count=int(np.count_nonzero(scores.vote.decision)),
            total_inference_time_ms=timing.score_ms,
            avg_inference_time_ms=timing.score_ms / len(rows),
            threshold=scores.voting.threshold,
            strategy=scores.voting.strategy,
            use_gpu=gpu,
            timing=timing,
            decision_rule=scores.voting.rule,
        )
    )
    return answer, scores


def _predict_single(
    state: WorkerState, body: bytes, received: float, started: float
) -> tuple[bytes, Scores]:
    try:
        wrapped = "opportunity" in _keys.decode(body)
        request = _single.decode(body) if wrapped else _RawSingle(msgspec.Raw(body))
    except msgspec.DecodeError as exc:
        raise schemas.bad_body(
            exc, "an opportunity, or {opportunity, threshold, use_gpu}"
        ) from None
    where: list[str | int] = ["body", "opportunity"] if wrapped else ["body"]
    [opportunity] = _opportunities([request.opportunity], received, where)
    [row], scores, gpu, timing = _score(
        state, [opportunity], request.threshold, request.use_gpu, started
    )
    answer = schemas.encode(
        SingleResponse(
            **msgspec.structs.asdict(row),
            threshold=scores.voting.threshold,
            use_gpu=gpu,
            timing=timing,
            decision_rule=scores.voting.rule,
        )
    )
    return answer, scores


@router.post(
    "/predict/batch",
    summary="Score opportunities (seed 000)",
    openapi_extra=schemas.body(BatchRequest, list[OpportunityInput]),
    responses=schemas.returns(BatchResponse, 400, 401, 413, 422),
)
async def predict_batch(body: JsonBody, state: Worker) -> Response:
    """Features, every ensemble member and the vote, exactly as the stream scores; at the
    request's ``threshold`` when it gives one."""
    started, received = time.perf_counter(), time.time()
    answer, scores = await to_thread.run_sync(
        _predict_batch, state, body, received, started, limiter=_scoring
    )
    await state.observe(scores)
    return Response(answer, media_type="application/json")


@router.post(
    "/predict/single",
    summary="Score one opportunity (seed 000)",
    openapi_extra=schemas.body(SingleRequest, OpportunityInput),
    responses=schemas.returns(SingleResponse, 400, 401, 422),
)
async def predict_single(body: JsonBody, state: Worker) -> Response:
    """One opportunity, alone or as ``{"opportunity": ..., "threshold": ...}``."""
    started, received = time.perf_counter(), time.time()
    answer, scores = await to_thread.run_sync(
        _predict_single, state, body, received, started, limiter=_scoring
    )
    await state.observe(scores)
    return Response(answer, media_type="application/json")


@router.post(
    "/predict",
    summary="Score seed 002's 8-feature vector",
    openapi_extra=schemas.body(FeaturesRequest),
    responses=schemas.returns(FeaturesResponse, 400, 401, 422, 503),
)
async def predict_features(body: JsonBody, state: Worker) -> Response:
    """Seed 002's engine: ``decision`` is ``confidence`` (the 8-feature model's probability of
    success) above the worker's threshold."""
    engine = state.scorer.ensemble.engine
    if engine is None:
        raise HTTPException(503, "no engine model is loaded (the worker's log says why)")
    try:
        x = engine_vector(_features.decode(body).features)
    except msgspec.DecodeError as exc:
        raise schemas.bad_body(exc, '{"features": [8 numbers]}') from None
    except FeatureVectorError as exc:
        raise HTTPException(422, [schemas.invalid(["body", "features"], str(exc))]) from None
    started = time.perf_counter()
    confidence = float((await to_thread.run_sync(engine.predict, x[None, :]))[0])
    elapsed_ms = (time.perf_counter() - started) * 1e3
    AI_REQUESTS.inc()
    AI_CONFIDENCE.set(confidence)
    AI_LATENCY.observe(elapsed_ms)
    threshold = state.settings.threshold
    return schemas.json_response(
        FeaturesResponse(
            decision=confidence > threshold,
            confidence=confidence,
            threshold=threshold,
            mode=state.mode,
            inference_time_ms=elapsed_ms,
            model_version=engine.version,
        )
    )
