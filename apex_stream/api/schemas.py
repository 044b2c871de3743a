"""The API's request and response bodies, as msgspec structs, and their OpenAPI description.

Bodies are decoded and encoded with msgspec (a batch request off the event loop, with its
scoring: 10,000 opportunities are one C call each way); FastAPI publishes their JSON Schemas
(:func:`body`, :func:`returns`, :func:`components`), so ``/openapi.json`` and ``/docs`` describe
exactly what the handlers read and write.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from fastapi import HTTPException, Response

from ..events import Probability, Recommendation
from ..inputs import OpportunityInput

Threshold = Annotated[float, msgspec.Meta(gt=0, lt=1)]
_encoder = msgspec.json.Encoder()
Mode = Literal["SIMULATION", "LIVE"]


# -- seed 000: /predict/batch, /predict/single ------------------------------------------------


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Seed 000's batch body. A bare JSON array of opportunities is accepted as well; each
    opportunity canonical or in its input form (README "Input forms")."""

    opportunities: list[OpportunityInput]
    # this request's decision threshold (default: the worker's); the expected_profit rule
    # ignores it
    threshold: Threshold | None = None
    use_gpu: bool = False  # answered in ``use_gpu``: scoring runs where the worker loaded models


class SingleRequest(msgspec.Struct, forbid_unknown_fields=True):
    """One opportunity with a threshold; the opportunity alone is accepted as well."""

    opportunity: OpportunityInput
    threshold: Threshold | None = None
    use_gpu: bool = False


class ScoredOpportunity(msgspec.Struct):
    """One opportunity's prediction: seed 000's fields first, then apex-stream's."""

    route_id: str
    prediction_score: Probability  # = score
    should_execute: bool  # = decision
    model_version_xgb: str | None  # None when the member did not vote on it
    model_version_onnx: str | None
    inference_time_ms: float  # the batch's model time shared evenly among its opportunities
    timestamp: str  # ISO 8601, UTC
    opportunity_id: str
    chain: str
    score: Probability
    decision: bool
    recommendation: Recommendation
    confidence: Probability
    model_scores: dict[str, float]  # the members that voted
    model_versions: dict[str, str]
    voters: list[str]  # empty when no member answered and the heuristic scored it
    strategy: str  # the vote's, or "heuristic"
    # score x quoted profit - (1 - score) x quoted gas (USD); None where a value was missing
    expected_profit_usd: float | None


class GpuUse(msgspec.Struct):
    """Whether a GPU scored the request: the worker loads each member once, on the device it
    was configured for (``APEX_DEVICE``); a request cannot move it."""

    requested: bool
    used: bool
    providers: dict[str, str]


class Timing(msgspec.Struct):
    decode_ms: float
    score_ms: float
    total_ms: float


class BatchResponse(msgspec.Struct):
    predictions: list[ScoredOpportunity]
    total_opportunities: int
    executable_count: int
    total_inference_time_ms: float
    avg_inference_time_ms: float
    threshold: float
    strategy: str
    use_gpu: GpuUse
    timing: Timing
    decision_rule: str  # "threshold" or "expected_profit" (APEX_DECISION_RULE)


class SingleResponse(ScoredOpportunity):
    threshold: float
    use_gpu: GpuUse
    timing: Timing
    decision_rule: str


# -- seed 002: /predict with 8 features --------------------------------------------------------


class FeaturesRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Seed 002's body: its 8-feature vector (README "Seed 002" lists them)."""

    features: list[float]


class FeaturesResponse(msgspec.Struct):
    decision: bool
    confidence: Probability  # the model's probability of success
    threshold: float
    mode: Mode
    inference_time_ms: float
    model_version: str


# -- model management (seed 000's ModelManager calls) ------------------------------------------


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``ModelManager.register_model``: a file the worker can read becomes a new version."""

    model_type: str  # the member: xgboost, onnx, ...
    model_path: str
    version: str
    metrics: dict[str, float] = {}
    activate: bool = False  # True: promote it at once instead of leaving it a candidate
    feature_version: str | None = None  # default: the one the worker computes for this model


class ABTestRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``ModelManager.setup_ab_test``: ``version_a`` is the active version."""

    model_type: str
    version_a: str
    version_b: str
    traffic_split: tuple[float, float] = (0.8, 0.2)


class PromoteWinnerRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``ModelManager.promote_winner``: decide the member's running A/B test now."""

    model_type: str


class ModelVersion(msgspec.Struct):
    model: str
    type: str
    status: str
    traffic: float
    metrics: dict[str, float]
    created: str


class ManifestChange(msgspec.Struct):
    models: list[ModelVersion]
    manifest_revision: int
    published: bool  # whether the running workers were told (live reload)
    message: str


class PromoteWinnerResponse(ManifestChange):
    action: Literal["promote", "rollback"]
    z: float
    p_value: float


# -- read-only routes ---------------------------------------------------------------------


class Root(msgspec.Struct):
    """Seed 000's health check."""

    status: str
    service: str
    version: str
    mode: Mode
    docs: str


class Status(msgspec.Struct):
    """Seed 002's fields (``redis_connected`` is always false: there is no Redis), then ours."""

    ai_engine: Literal["online", "offline"]
    mode: Mode
    model_type: str | None
    redis_connected: bool
    total_requests: int
    model_version: str | None
    threshold: float
    manifest_revision: int


class StreamFigures(msgspec.Struct):
    opportunities_scored: int
    executable: int
    price_ticks: int
    online_learned: int


class MetricsSummary(msgspec.Struct):
    """Seed 002's ``/predict`` figures, then the stream's."""

    total_requests: int
    avg_inference_time_ms: float | None
    last_confidence: float | None
    mode: Mode
    stream: StreamFigures


class Join(msgspec.Struct):
    scored_waiting: int
    outcomes_waiting: int


class Health(msgspec.Struct):
    """The worker's state (the API starts once the tables are recovered): ``degraded`` with
    the ``reasons`` when a member failed, a manifest revision was refused or lags, or the
    consumer lag grows; the worker still scores (HTTP 200)."""

    status: Literal["ok", "degraded"]
    reasons: list[str]
    recovered: bool
    model_versions: dict[str, str]
    manifest_revision: int
    traffic: dict[str, dict[str, float]]
    providers: dict[str, str]
    market_tokens: int
    assigned: list[str]  # topic:partition
    join: Join


class Voting(msgspec.Struct):
    strategy: str
    threshold: float
    weights: dict[str, float]
    online_weight: float


class ModelsSummary(msgspec.Struct):
    active: dict[str, str]
    providers: dict[str, str]
    traffic: dict[str, dict[str, float]]
    manifest_revision: int
    voting: Voting
    online_learned: int
    performance: dict[str, dict[str, float]]  # member@version: figures from outcomes
    manifest: list[ModelVersion]


class Problem(msgspec.Struct):
    """FastAPI's error body: ``detail`` is a message or a list of errors with their location."""

    detail: str | list[dict[str, Any]]


SCHEMA_TYPES: tuple[Any, ...] = (
    BatchRequest,
    SingleRequest,
    BatchResponse,
    SingleResponse,
    FeaturesRequest,
    FeaturesResponse,
    RegisterRequest,
    ABTestRequest,
    PromoteWinnerRequest,
    ManifestChange,
    PromoteWinnerResponse,
    Root,
    Status,
    MetricsSummary,
    Health,
    ModelsSummary,
    Problem,
)
REF = "#/components/schemas/{name}"


def _ref(kind: Any) -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema_components([kind], ref_template=REF)[0][0]
    return schema


def body(kind: Any, *alternatives: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring a route's JSON request body (one of several forms)."""
    schemas = [_ref(k) for k in (kind, *alternatives)]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def returns(kind: Any, *errors: int) -> dict[int | str, dict[str, Any]]:
    """``responses`` declaring a route's JSON answer and the error statuses it may give."""

    def answer(description: str, schema: Any) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    problem = _ref(Problem)
    documented: dict[int | str, dict[str, Any]] = {200: answer("OK", _ref(kind))}
    return documented | {code: answer(_REASONS[code], problem) for code in errors}


_REASONS = {
    400: "Not JSON, or not the documented form",
    401: "Missing or wrong bearer token (APEX_API_TOKEN)",
    404: "No such model version",
    409: "The registry refused the change, or the test is not decided yet",
    413: "More opportunities, or more bytes, than one request may carry",
    415: "The body is not declared application/json",
    422: "Invalid values, each with its location",
    503: "The model is not loaded",
}


def components() -> dict[str, Any]:
    """The JSON Schemas every ``#/components/schemas/...`` reference above points to."""
    schemas: dict[str, Any] = msgspec.json.schema_components(SCHEMA_TYPES, ref_template=REF)[1]
    return schemas


def json_response(body: msgspec.Struct | dict[str, Any]) -> Response:
    """A body encoded with msgspec."""
    return Response(_encoder.encode(body), media_type="application/json")


def encode(body: msgspec.Struct) -> bytes:
    return _encoder.encode(body)


def invalid(loc: list[str | int], msg: str) -> dict[str, Any]:
    """One entry of a 422's ``detail``, as FastAPI writes them."""
    return {"loc": loc, "msg": msg, "type": "value_error"}


def bad_body(exc: msgspec.DecodeError, form: str) -> HTTPException:
    """A body msgspec could not read: 422 when it is JSON of the wrong shape, else 400."""
    if isinstance(exc, msgspec.ValidationError):
        return HTTPException(422, [invalid(["body"], str(exc))])
    return HTTPException(400, f"expected {form}: {exc}")
