"""The bridge's wire protocol: channels, client commands, filters and envelopes (pure).

Relayed events are encoded once into envelopes; a micro-batch of them becomes a
:class:`Batch` with the columns filters look at, so each distinct filter is evaluated with
numpy over the batch instead of once per client and message.

Seed 000's clients (its `websocket_server.py` protocol) work unchanged: a command may be named
by ``command`` as well as ``type``, a prediction's ``data`` carries the seed's field names
beside ours (:class:`SeedPrediction`, spliced in once per event), and a client may take one
envelope per frame (:data:`Framing`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, overload

import msgspec
import numpy as np

from ..errors import ApexStreamError, InvalidEvent
from ..events import Alert, Event, Metric, Opportunity, Outcome, Prediction, decode, encode
from ..inputs import kafka_time, read


class ProtocolError(ApexStreamError):
    """A client command the bridge cannot follow; the reason goes back as an `error` reply."""


@dataclass(frozen=True)
class Channel:
    """A stream clients subscribe to: the topic behind it and how its events are labelled."""

    name: str
    topic: str
    kind: str
    event: type[Event]
    time_field: str


CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel("opportunities", "opportunities", "opportunity", Opportunity, "timestamp"),
        Channel("predictions", "predictions", "prediction", Prediction, "timestamp"),
        Channel("executions", "outcomes", "execution", Outcome, "executed_at"),
        Channel("alerts", "alerts", "alert", Alert, "timestamp"),
        Channel("metrics", "metrics", "metrics", Metric, "timestamp"),
    )
}


class Filter(msgspec.Struct, forbid_unknown_fields=True):
    """What a subscriber wants of a channel; fields a channel's events lack are not applied."""

    chain: str | list[str] | None = None
    route_id: str | list[str] | None = None
    tokens: list[str] | None = None
    min_score: float | None = None
    decision: bool | None = None

    def key(self) -> tuple[Any, ...]:
        """Equal filters share one evaluation per batch."""
        return (
            _as_set(self.chain),
            _as_set(self.route_id),
            _as_set(self.tokens),
            self.min_score,
            self.decision,
        )

    def mask(self, batch: Batch) -> np.ndarray | None:
        """Which of the batch's messages pass; ``None`` when all of them do."""
        if batch.channel in ("alerts", "metrics"):
            return None
        mask = np.ones(len(batch), dtype=bool)
        if self.chain is not None:
            mask &= np.isin(batch.chains, list(_as_set(self.chain)))
        if self.route_id is not None:
            mask &= np.isin(batch.routes, list(_as_set(self.route_id)))
        if self.tokens is not None:
            wanted = frozenset(self.tokens)
            mask &= np.fromiter(
                (not wanted.isdisjoint(t) for t in batch.tokens), dtype=bool, count=len(batch)
            )
        if batch.channel == "predictions":
            if self.min_score is not None:
                mask &= batch.scores >= self.min_score
            if self.decision is not None:
                mask &= batch.decisions == self.decision
        return None if mask.all() else mask


@overload
def _as_set(value: str | list[str]) -> frozenset[str]: ...
@overload
def _as_set(value: None) -> None: ...
def _as_set(value: str | list[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


class Offsets(msgspec.Struct, forbid_unknown_fields=True):
    """``since`` as Kafka offsets per partition of the channel's topic."""

    offsets: dict[int, int]


#: How a client's relayed envelopes are framed: ``array``, a JSON array of every envelope pending
#: (as few frames as possible, the default on ``/ws``), or ``event``, each envelope its own
#: frame (the default on ``/``, where seed 000's clients connect).
Framing = Literal["array", "event"]


class Subscribe(msgspec.Struct, tag="subscribe", tag_field="type", forbid_unknown_fields=True):
    channels: list[str]
    filters: Filter = msgspec.field(default_factory=Filter)
    since: float | str | Offsets | None = None
    framing: Framing | None = None  # the connection's framing from now on; None: unchanged
    id: int | str | None = None


class Unsubscribe(msgspec.Struct, tag="unsubscribe", tag_field="type", forbid_unknown_fields=True):
    channels: list[str] | None = None
    id: int | str | None = None


class Stats(msgspec.Struct, tag="stats", tag_field="type", forbid_unknown_fields=True):
    id: int | str | None = None


class Ping(msgspec.Struct, tag="ping", tag_field="type", forbid_unknown_fields=True):
    id: int | str | None = None


Command = Subscribe | Unsubscribe | Stats | Ping
_commands = msgspec.json.Decoder(Command)
_encoder = msgspec.json.Encoder()


def parse_command(frame: str | bytes) -> Command:
    """Decode and check one client command; raises :class:`ProtocolError` with the reason.

    The command is named by ``type`` or, as seed 000's clients send it, ``command``; both may
    be given if they agree (different names are refused rather than one silently winning).
    """
    renamed = False
    try:
        body = msgspec.json.decode(frame)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from None
    if isinstance(body, dict) and "command" in body:
        name = body.pop("command")
        if body.setdefault("type", name) != name:
            raise ProtocolError(
                f"`type` {body['type']!r} and `command` {name!r} differ: name the command once"
            )
        frame, renamed = _encoder.encode(body), True
    try:
        command = _commands.decode(frame)
    except msgspec.ValidationError as exc:
        reason = str(exc).replace("`$.type`", "`$.command`") if renamed else str(exc)
        raise ProtocolError(f"invalid command: {reason}") from None
    channels = getattr(command, "channels", None) or []
    unknown = sorted(set(channels) - CHANNELS.keys())
    if unknown:
        raise ProtocolError(f"unknown channel {unknown}; channels are {sorted(CHANNELS)}")
    if isinstance(command, Subscribe):
        if not command.channels:
            raise ProtocolError("subscribe needs at least one channel")
        if (s := command.filters.min_score) is not None and not 0 <= s <= 1:
            raise ProtocolError(f"min_score must be within [0, 1], got {s}")
        if command.since is not None:
            since_ms(command.since)
    return command


def since_ms(since: float | str | Offsets) -> int | dict[int, int]:
    """A replay start: a Kafka timestamp in ms, or offsets per partition."""
    if isinstance(since, Offsets):
        if any(o < 0 for o in since.offsets.values()):
            raise ProtocolError("since offsets must be >= 0")
        return since.offsets
    if isinstance(since, str):
        try:
            stamp = dt.datetime.fromisoformat(since)
        except ValueError:
            raise ProtocolError(f"since {since!r} is not an ISO-8601 time") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        return int(stamp.timestamp() * 1000)
    if since < 0:
        raise ProtocolError("since must be a Unix time in seconds >= 0")
    return int(since * 1000)


def control(kind: str, **fields: Any) -> bytes:
    """A control message (one JSON object per frame); an absent ``id`` is left out."""
    if fields.get("id", 0) is None:
        del fields["id"]
    return _encoder.encode({"type": kind, **fields})


class Envelope(msgspec.Struct):
    type: str
    channel: str
    time: float
    partition: int
    offset: int
    ts: int
    data: msgspec.Raw


class SeedPrediction(msgspec.Struct):
    """Seed 000's names for a prediction's figures, added to its ``data`` beside ours.

    ``inference_time_ms`` is our ``latency_ms``: end to end, from the opportunity's Kafka
    record time to the prediction being produced, not the model's compute time alone. A
    version is ``null`` when that member is not in the ensemble.
    """

    prediction_score: float
    should_execute: bool
    model_version_xgb: str | None
    model_version_onnx: str | None
    inference_time_ms: float


def with_seed_fields(value: bytes, prediction: Prediction) -> bytes:
    """The prediction's JSON object with :class:`SeedPrediction`'s fields spliced in before its
    closing brace (the event is never re-encoded; its own fields stay as produced)."""
    extra = _encoder.encode(
        SeedPrediction(
            prediction.score,
            prediction.decision,
            prediction.model_versions.get("xgboost"),
            prediction.model_versions.get("onnx"),
            prediction.latency_ms,
        )
    )
    return value.rstrip()[:-1] + b"," + extra[1:]


class Record(Protocol):
    """What the bridge needs of a Kafka record (aiokafka's ConsumerRecord has these)."""

    partition: int
    offset: int
    timestamp: int
    value: bytes | None


@dataclass(frozen=True)
class Batch:
    """Encoded envelopes of one channel with the columns filters use."""

    channel: str
    encoded: list[bytes]
    partitions: np.ndarray
    offsets: np.ndarray
    stamps: np.ndarray
    chains: np.ndarray
    routes: np.ndarray
    tokens: list[frozenset[str]]
    scores: np.ndarray
    decisions: np.ndarray
    invalid: int = 0

    def __len__(self) -> int:
        return len(self.encoded)

    def select(self, mask: np.ndarray | None) -> list[bytes]:
        if mask is None:
            return self.encoded
        return [e for e, keep in zip(self.encoded, mask.tolist(), strict=True) if keep]


class Routes:
    """route_id → tokens, learned from relayed opportunities, so token filters reach
    predictions and executions (which name only their route). Bounded, oldest forgotten."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._tokens: dict[str, frozenset[str]] = {}

    def learn(self, route_id: str, tokens: Sequence[str]) -> frozenset[str]:
        known = self._tokens.get(route_id)
        if known is None:
            known = self._tokens[route_id] = frozenset(tokens)
            if len(self._tokens) > self.limit:
                del self._tokens[next(iter(self._tokens))]
        return known

    def get(self, route_id: str) -> frozenset[str]:
        return self._tokens.get(route_id, frozenset())


_EMPTY: frozenset[str] = frozenset()


def batch_of(channel: Channel, records: Sequence[Record], routes: Routes) -> Batch:
    """Decode and validate a channel's records and encode each envelope once (a prediction's
    with seed 000's fields); an opportunity in its input form (as a seed writes it) is relayed
    as the stream reads it, normalized; records that do not validate are counted in
    ``invalid`` and not relayed."""
    events: list[Any] = []
    kept: list[Record] = []
    payloads: list[bytes] = []
    for record in records:
        try:
            event = decode(record.value, channel.event)
            payload = record.value or b""
        except InvalidEvent:
            try:
                event = read(record.value, channel.event, kafka_time(record.timestamp))
            except InvalidEvent:
                continue
            payload = encode(event)
        events.append(event)
        kept.append(record)
        payloads.append(payload)
    seeded = channel.event is Prediction
    encoded = [
        _encoder.encode(
            Envelope(
                channel.kind,
                channel.name,
                getattr(event, channel.time_field),
                r.partition,
                r.offset,
                r.timestamp,
                msgspec.Raw(with_seed_fields(payload, event) if seeded else payload),
            )
        )
        for event, r, payload in zip(events, kept, payloads, strict=True)
    ]
    n = len(events)
    routed = channel.name in ("opportunities", "predictions", "executions")
    if channel.name == "opportunities":
        tokens = [routes.learn(e.route_id, e.tokens) for e in events]
    elif routed:
        tokens = [routes.get(e.route_id) for e in events]
    else:
        tokens = [_EMPTY] * n
    if channel.name == "predictions":
        scores = np.fromiter((e.score for e in events), dtype=np.float64, count=n)
        decisions = np.fromiter((e.decision for e in events), dtype=bool, count=n)
    else:
        scores, decisions = np.full(n, np.nan), np.zeros(n, dtype=bool)
    return Batch(
        channel=channel.name,
        encoded=encoded,
        partitions=np.fromiter((r.partition for r in kept), dtype=np.int64, count=n),
        offsets=np.fromiter((r.offset for r in kept), dtype=np.int64, count=n),
        stamps=np.fromiter((r.timestamp for r in kept), dtype=np.int64, count=n),
        chains=np.array([e.chain for e in events] if routed else [""] * n, dtype=object),
        routes=np.array([e.route_id for e in events] if routed else [""] * n, dtype=object),
        tokens=tokens,
        scores=scores,
        decisions=decisions,
        invalid=len(records) - n,
    )
