"""Typed events for every topic: the vocabulary every stage shares.

Events are ``msgspec`` structs: JSON decoding and validation run in C (a few µs per message),
type errors carry the JSON path, and the JSON Schemas in ``topics/`` are generated from these
classes (``python scripts/gen_topic_schemas.py``; a unit test checks they agree).
Checks that JSON Schema cannot express (finite numbers, route consistency, clock skew) live in
``__post_init__`` and hold for events built in Python too.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec

from .errors import InvalidEvent

#: Events stamped further than this into the future are rejected (seconds).
MAX_CLOCK_SKEW_S = 60.0
#: Oldest plausible event time (2020-01-01T00:00:00Z); older stamps are almost always unit errors.
MIN_TIMESTAMP = 1_577_836_800.0

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Timestamp = Annotated[float, msgspec.Meta(gt=0, description="Unix time in seconds (UTC).")]


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of all events; ``topic`` names the topic file in ``topics/`` that carries it."""

    topic: ClassVar[str]
    key_fields: ClassVar[tuple[str, ...]]

    def __post_init__(self) -> None:
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"`{field}` must be a finite number, got {value}")

    def key(self) -> bytes:
        """The Kafka message key: the topic's key fields joined by ``:``."""
        return ":".join(str(getattr(self, f)) for f in self.key_fields).encode()


def _check_time(name: str, value: float) -> None:
    if value < MIN_TIMESTAMP:
        raise ValueError(f"`{name}` {value} is before 2020-01-01; send Unix seconds")
    if value > time.time() + MAX_CLOCK_SKEW_S:
        raise ValueError(f"`{name}` {value} is more than {MAX_CLOCK_SKEW_S:.0f}s in the future")


class PriceTick(Event, frozen=True):
    """One DEX's quote for a token: price in USD, traded volume and pool liquidity."""

    topic: ClassVar[str] = "prices"
    key_fields: ClassVar[tuple[str, ...]] = ("chain", "token")

    chain: Name
    token: Name
    dex: Name
    price: Positive
    volume: NonNegative
    liquidity: NonNegative
    gas_price: NonNegative
    timestamp: Timestamp

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_time("timestamp", self.timestamp)


class Opportunity(Event, frozen=True):
    """A cyclic arbitrage route found by a scanner.

    ``tokens`` are the route's distinct tokens in order; hop ``i`` swaps ``tokens[i]`` into
    ``tokens[(i + 1) % n]`` on ``dexes[i]``, so the route closes back on its first token and
    ``len(dexes) == len(tokens)``. Amounts are in USD.
    """

    topic: ClassVar[str] = "opportunities"
    key_fields: ClassVar[tuple[str, ...]] = ("opportunity_id",)

    opportunity_id: Identifier
    route_id: Identifier
    chain: Name
    tokens: Annotated[list[Name], msgspec.Meta(min_length=2, max_length=8)]
    dexes: Annotated[list[Name], msgspec.Meta(min_length=2, max_length=8)]
    input_amount: Positive
    expected_output: NonNegative
    gas_estimate: NonNegative
    profit_usd: float
    confidence_score: Probability
    timestamp: Timestamp

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.dexes) != len(self.tokens):
            raise ValueError(
                f"route has {len(self.tokens)} tokens but {len(self.dexes)} dexes; "
                "a closed route needs one dex per hop (len(dexes) == len(tokens))"
            )
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError(f"route tokens repeat: {self.tokens}; list each token once")
        _check_time("timestamp", self.timestamp)


class Prediction(Event, frozen=True):
    """The ensemble's verdict on one opportunity.

    ``features`` are the values it was scored with (``null`` where a feature was missing), in
    the order of the feature list ``feature_version``: the record retraining learns from.
    """

    topic: ClassVar[str] = "predictions"
    key_fields: ClassVar[tuple[str, ...]] = ("opportunity_id",)

    opportunity_id: Identifier
    route_id: Identifier
    chain: Name
    score: Probability
    decision: bool
    threshold: Probability
    strategy: Name
    model_scores: dict[str, Probability]
    model_versions: dict[str, str]
    latency_ms: NonNegative
    opportunity_timestamp: Timestamp
    timestamp: Timestamp
    feature_version: str | None = None
    features: list[float | None] = msgspec.field(default_factory=list)


class Outcome(Event, frozen=True):
    """What happened when an opportunity was executed on chain."""

    topic: ClassVar[str] = "outcomes"
    key_fields: ClassVar[tuple[str, ...]] = ("opportunity_id",)

    opportunity_id: Identifier
    route_id: Identifier
    chain: Name
    success: bool
    realized_profit_usd: float
    gas_used: NonNegative
    gas_cost_usd: NonNegative
    executed_at: Timestamp

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_time("executed_at", self.executed_at)


class Alert(Event, frozen=True):
    """Something an operator should know about, with the numbers behind it."""

    topic: ClassVar[str] = "alerts"
    key_fields: ClassVar[tuple[str, ...]] = ("kind",)

    alert_id: Identifier
    kind: Name
    severity: Literal["info", "warning", "critical"]
    message: str
    data: dict[str, Any]
    model_version: str | None = None
    timestamp: Timestamp = msgspec.field(default_factory=time.time)


class Metric(Event, frozen=True):
    """A periodic snapshot of a component's figures, for dashboards."""

    topic: ClassVar[str] = "metrics"
    key_fields: ClassVar[tuple[str, ...]] = ("source",)

    source: Name
    values: dict[str, float]
    timestamp: Timestamp = msgspec.field(default_factory=time.time)


class ModelControl(Event, frozen=True):
    """A revision of the model manifest (models/manifest.json) that every worker serves once it
    is newer than its own; keyed by ``kind`` on a compacted topic, so the last one stays."""

    topic: ClassVar[str] = "model-control"
    key_fields: ClassVar[tuple[str, ...]] = ("kind",)

    revision: Annotated[int, msgspec.Meta(ge=1)]
    manifest: dict[str, Any]
    reason: str
    kind: Literal["manifest"] = "manifest"
    timestamp: Timestamp = msgspec.field(default_factory=time.time)


class DeadLetter(Event, frozen=True):
    """A rejected message, kept with where it came from and why it was rejected."""

    topic: ClassVar[str] = "dead-letters"
    key_fields: ClassVar[tuple[str, ...]] = ("source_topic",)

    source_topic: str
    partition: int
    offset: int
    source_key: str | None
    payload: str
    reason: str
    timestamp: Timestamp = msgspec.field(default_factory=time.time)


EVENT_TYPES: tuple[type[Event], ...] = (
    PriceTick,
    Opportunity,
    Prediction,
    Outcome,
    Alert,
    Metric,
    ModelControl,
    DeadLetter,
)
EVENT_FOR_TOPIC: dict[str, type[Event]] = {cls.topic: cls for cls in EVENT_TYPES}

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Event], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls) for cls in EVENT_TYPES
}


def encode(event: Event) -> bytes:
    """Serialise an event to compact JSON."""
    return _encoder.encode(event)


E = TypeVar("E", bound=Event)


def decode(payload: bytes | None, cls: type[E]) -> E:
    """Parse and validate one message; raises :class:`InvalidEvent` with a readable reason."""
    if payload is None:
        raise InvalidEvent("message has no value (a tombstone?); send the event as JSON")
    try:
        return _decoders[cls].decode(payload)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"invalid {cls.__name__}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None


def to_builtins(event: Event) -> dict[str, Any]:
    """The event as plain Python types (for JSON lines, dashboards and the database)."""
    return msgspec.to_builtins(event)
