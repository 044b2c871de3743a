"""Typed events for every topic: the vocabulary every stage shares.

Events are ``msgspec`` structs: JSON decoding and validation run in C (a few µs per message),
type errors carry the JSON path, and the JSON Schemas in ``topics/`` are generated from
these classes (``python scripts/gen_topic_schemas.py``; a unit test checks they agree).
Checks that JSON Schema cannot express (finite numbers, route consistency, clock skew) live in
``__post_init__`` and hold for events built in Python too; :func:`decode_batch` runs them once
per batch instead of once per message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, get_type_hints

import msgspec
import numpy as np

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
Severity = Literal["info", "warning", "critical"]
Recommendation = Literal["EXECUTE", "SKIP"]


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of all events; ``topic`` names the topic file that declares the topic carrying it.

    Beyond msgspec's own checks (types, ranges, required and unknown fields, in C), an event's
    floats must be finite and its ``time_fields`` plausible Unix seconds. ``__post_init__``
    checks one event built in Python; :meth:`problems` checks a decoded batch with numpy and
    gives the same reasons (a unit test holds them equal).
    """

    topic: ClassVar[str]
    key_fields: ClassVar[tuple[str, ...]]
    time_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if _batched.get():  # decode_batch checks the whole batch at once
            return
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(_not_finite(field, value))
        problem = self._problem()
        now = time.time()
        for name in self.time_fields:
            problem = problem or _time_problem(name, getattr(self, name), now)
        if problem:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        """This event type's own rule, checked after finite numbers and before times."""
        return None

    @classmethod
    def problems(cls, events: Sequence[Event]) -> dict[int, str]:
        """``__post_init__``'s checks over a batch: the first problem of each invalid event,
        by its position."""
        found: dict[int, str] = {}
        for name in _float_fields(cls):
            values = _column(events, name)
            for i in np.flatnonzero(~np.isfinite(values)).tolist():
                found.setdefault(i, _not_finite(name, values[i]))
        for i in cls._suspects(events).tolist():
            found.setdefault(i, events[i]._problem() or "")
        now = time.time()
        for name in cls.time_fields:
            values = _column(events, name)
            late = values > now + MAX_CLOCK_SKEW_S
            for i in np.flatnonzero((values < MIN_TIMESTAMP) | late).tolist():
                found.setdefault(i, _time_problem(name, values[i], now) or "")
        return {i: reason for i, reason in found.items() if reason}

    @classmethod
    def _suspects(cls, events: Sequence[Event]) -> np.ndarray:
        """Positions where :meth:`_problem` may find something, found with numpy."""
        return np.empty(0, np.int64)

    def key(self) -> bytes:
        """The Kafka message key: the topic's key fields joined by ``:``."""
        return ":".join(str(getattr(self, f)) for f in self.key_fields).encode()


#: Set while :func:`decode_batch` decodes: ``__post_init__`` leaves the checks to the batch.
_batched: ContextVar[bool] = ContextVar("batched", default=False)


@contextmanager
def checks_deferred() -> Iterator[None]:
    """Events built inside skip ``__post_init__``'s checks: for a caller that runs
    :meth:`Event.problems` over all of them at once, as :func:`decode_batch` does."""
    token = _batched.set(True)
    try:
        yield
    finally:
        _batched.reset(token)


def _not_finite(name: str, value: float) -> str:
    return f"`{name}` must be a finite number, got {value}"


def _time_problem(name: str, value: float, now: float) -> str | None:
    if value < MIN_TIMESTAMP:
        return f"`{name}` {value} is before 2020-01-01; send Unix seconds"
    if value > now + MAX_CLOCK_SKEW_S:
        return f"`{name}` {value} is more than {MAX_CLOCK_SKEW_S:.0f}s in the future"
    return None


@cache
def _float_fields(cls: type[Event]) -> tuple[str, ...]:
    hints = get_type_hints(cls)
    return tuple(f for f in cls.__struct_fields__ if hints[f] is float)


def _column(events: Sequence[Event], name: str) -> np.ndarray:
    return np.fromiter(map(attrgetter(name), events), np.float64, len(events))


class PriceTick(Event, frozen=True):
    """One DEX's quote for a token: price in USD, traded volume and pool liquidity, gas price
    in gwei. This is the canonical form; the topic also takes bots' own price records
    (``PriceTickInput`` in ``apex_stream/inputs.py``), normalized into this one."""

    topic: ClassVar[str] = "prices"
    key_fields: ClassVar[tuple[str, ...]] = ("chain", "token")
    time_fields: ClassVar[tuple[str, ...]] = ("timestamp",)

    chain: Name
    token: Name
    dex: Name
    price: Positive
    volume: NonNegative
    liquidity: NonNegative
    gas_price: NonNegative
    timestamp: Timestamp


class Opportunity(Event, frozen=True):
    """A cyclic arbitrage route found by a scanner.

    ``tokens`` are the route's distinct tokens in order; hop ``i`` swaps ``tokens[i]`` into
    ``tokens[(i + 1) % n]`` on ``dexes[i]``, so the route closes back on its first token and
    ``len(dexes) == len(tokens)``. Amounts are in USD. This is the canonical form; the topic
    also takes scanners' own form (closed routes, no id or timestamp, milliseconds, chain ids),
    normalized into this one (``OpportunityInput`` in ``apex_stream/inputs.py``).
    """

    topic: ClassVar[str] = "opportunities"
    key_fields: ClassVar[tuple[str, ...]] = ("opportunity_id",)
    time_fields: ClassVar[tuple[str, ...]] = ("timestamp",)

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

    def _problem(self) -> str | None:
        if len(self.dexes) != len(self.tokens):
            return (
                f"route has {len(self.tokens)} tokens but {len(self.dexes)} dexes; give one "
                "dex per hop: len(dexes) == len(tokens), or len(tokens) - 1 when the route "
                "repeats its first token at the end"
            )
        if len(set(self.tokens)) != len(self.tokens):
            return (
                f"route tokens repeat: {self.tokens}; list each token once (a route written "
                "closed repeats only its first token, at the end)"
            )
        return None

    @classmethod
    def _suspects(cls, events: Sequence[Event]) -> np.ndarray:
        n = len(events)
        tokens = list(map(attrgetter("tokens"), events))
        hops = np.fromiter(map(len, tokens), np.int64, n)
        dexes = np.fromiter(map(len, map(attrgetter("dexes"), events)), np.int64, n)
        distinct = np.fromiter(map(len, map(set, tokens)), np.int64, n)
        return np.flatnonzero((dexes != hops) | (distinct != hops))


class Prediction(Event, frozen=True):
    """The ensemble's verdict on one opportunity.

    ``score`` is the ensemble's probability that executing succeeds; ``decision`` (the
    ``recommendation`` EXECUTE, else SKIP) is whether the vote clears ``threshold``.
    ``confidence`` is the ensemble's probability that its recommendation is right: ``score`` for
    EXECUTE, ``1 - score`` for SKIP (seed 001's ``recommendation`` and ``confidence``).
    ``features`` are the values it was scored with (``null`` where a feature was missing), in
    the order of the feature list ``feature_version``: the record retraining learns from.
    ``voters`` are the members whose scores went into the vote (``model_scores`` has theirs
    alone): a member that failed is left out, and with none left the ``strategy`` is
    ``heuristic``.
    ``expected_profit_usd`` is ``score`` times the quoted net profit minus ``1 - score`` times
    the quoted gas cost (``null`` where a value was missing); under ``decision_rule``
    ``expected_profit`` the decision is whether it clears the configured minimum instead of
    the threshold (``apex_stream/inference/decision.py``).
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
    # set on every prediction since seed 001's interface; absent in older ones
    recommendation: Recommendation | None = None
    confidence: Probability | None = None
    feature_version: str | None = None
    features: list[float | None] = msgspec.field(default_factory=list)
    # set on every prediction since failover; absent in older ones
    voters: list[str] | None = None
    # set on every prediction since the expected-profit rule; absent in older ones
    expected_profit_usd: float | None = None
    decision_rule: Name | None = None
    # seed 001's priceForecasts and volatilityForecast for the route's tokens (token -> {"5s":
    # USD, ...}; token -> bps per sqrt(s) over the next minute), made from the token's last
    # quote where models/forecast.json is fitted; absent before forecasts and when none is made
    price_forecasts: dict[str, dict[str, float]] | None = None
    volatility_forecast: dict[str, float] | None = None


class Outcome(Event, frozen=True):
    """What happened when an opportunity was executed on chain."""

    topic: ClassVar[str] = "outcomes"
    key_fields: ClassVar[tuple[str, ...]] = ("opportunity_id",)
    time_fields: ClassVar[tuple[str, ...]] = ("executed_at",)

    opportunity_id: Identifier
    route_id: Identifier
    chain: Name
    success: bool
    realized_profit_usd: float
    gas_used: NonNegative
    gas_cost_usd: NonNegative
    executed_at: Timestamp


class Alert(Event, frozen=True):
    """Something an operator should know about, with the numbers behind it."""

    topic: ClassVar[str] = "alerts"
    key_fields: ClassVar[tuple[str, ...]] = ("kind",)

    alert_id: Identifier
    kind: Name
    severity: Severity
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
    decoder: msgspec.json.Decoder[E] = _decoders[cls]
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"invalid {cls.__name__}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None


@dataclass(frozen=True)
class Batch(Generic[E]):
    """A decoded batch: the valid events with their positions in the input, and each invalid
    one's position with its reason."""

    events: list[E]
    index: list[int]
    rejected: list[tuple[int, str]]


def decode_batch(payloads: Sequence[bytes | None], cls: type[E]) -> Batch[E]:
    """Decode and validate many messages of one type: msgspec's checks per message, in C, then
    ``__post_init__``'s once over the batch (:meth:`Event.problems`), with the reasons
    :func:`decode` gives."""
    decoder: msgspec.json.Decoder[E] = _decoders[cls]
    with checks_deferred():
        try:
            # a None payload raises TypeError here, which sends the batch down the per-message
            # path
            events = list(map(decoder.decode, payloads))  # type: ignore[arg-type]
            index = list(range(len(events)))
            rejected: list[tuple[int, str]] = []
        except (msgspec.DecodeError, TypeError):  # ValidationError is a DecodeError
            events, index, rejected = [], [], []
            for i, payload in enumerate(payloads):
                try:
                    events.append(decode(payload, cls))
                    index.append(i)
                except InvalidEvent as exc:
                    rejected.append((i, exc.reason))
    return checked(Batch(events, index, rejected), cls)


def checked(batch: Batch[E], cls: type[E]) -> Batch[E]:
    """A batch of events built with :func:`checks_deferred`, less those that fail
    ``__post_init__``'s checks (:meth:`Event.problems`): rejected with their reasons."""
    problems = cls.problems(batch.events)
    if not problems:
        return batch
    index = batch.index
    rejected = sorted(
        batch.rejected + [(index[j], f"invalid {cls.__name__}: {r}") for j, r in problems.items()]
    )
    events = [e for j, e in enumerate(batch.events) if j not in problems]
    index = [i for j, i in enumerate(index) if j not in problems]
    return Batch(events, index, rejected)


def to_builtins(event: Event) -> dict[str, Any]:
    """The event as plain Python types (for JSON lines, dashboards and the database)."""
    builtins: dict[str, Any] = msgspec.to_builtins(event)
    return builtins
