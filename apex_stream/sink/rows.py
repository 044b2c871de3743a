"""Events as database rows: each table's columns and types, and per event two forms of its row:

- ``row``: the row as Python values (datetimes, lists, ``Jsonb``), the readable reference;
- ``encode``: the same row as one tuple of PostgreSQL's binary COPY format, built with
  ``struct`` in one pass. This is the sink's hot path: it skips the datetime objects and
  psycopg's per-value dumpers (``json.dumps`` for jsonb and the generic list dumper for arrays
  cost several µs per row). The integration tests check that both forms store the same row.

Binary COPY tuple: int16 field count, then per field an int32 length (-1 for NULL) and the
value in its type's binary send format: timestamptz is int64 µs since 2000-01-01 UTC, float8
is an IEEE double, jsonb is the byte 1 then the JSON text, arrays are a header (dimensions,
null flag, element type oid, length, lower bound) then their elements as fields.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from math import modf
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from ..events import Event, Opportunity, Outcome, Prediction, PriceTick

#: PostgreSQL's epoch (2000-01-01 UTC) in Unix seconds
PG_EPOCH_S = 946_684_800
#: the binary COPY stream's header (signature, flags, header extension length) and trailer
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
TEXT_OID, FLOAT8_OID = 25, 701


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _micros(seconds: float) -> int:
    """Unix seconds as timestamptz's binary value, rounded exactly as ``_time`` rounds
    (half to even on the fraction's microseconds)."""
    fraction, whole = modf(seconds)
    return (int(whole) - PG_EPOCH_S) * 1_000_000 + round(fraction * 1e6)


_int4 = struct.Struct(">i").pack
_json = msgspec.json.Encoder().encode
_texts: dict[str, bytes] = {}


def _text(value: str) -> bytes:
    """A text field (length and UTF-8 bytes), cached: chains, tokens, dexes, routes and
    strategies repeat on almost every row."""
    try:
        return _texts[value]
    except KeyError:
        data = value.encode()
        if len(_texts) >= 100_000:
            _texts.clear()
        field = _texts[value] = _int4(len(data)) + data
        return field


def _field(data: bytes) -> bytes:
    return _int4(len(data)) + data


_arrays: dict[tuple[str, ...], bytes] = {}


def _text_array(values: list[str]) -> bytes:
    """A text[] field (one dimension, no NULL elements), cached: routes repeat."""
    key = tuple(values)
    try:
        return _arrays[key]
    except KeyError:
        if values:
            header = struct.pack(">iiiii", 1, 0, TEXT_OID, len(values), 1)
        else:
            header = struct.pack(">iii", 0, 0, TEXT_OID)
        if len(_arrays) >= 100_000:
            _arrays.clear()
        field = _arrays[key] = _field(header + b"".join([_text(v) for v in values]))
        return field


_FLOAT8 = struct.Struct(">id").pack
_NULL = _int4(-1)


@functools.cache
def _float8_array_of(n: int) -> Callable[..., bytes]:
    """Packs a whole float8[] field of ``n`` elements, none NULL, from its header's values and
    the elements' (length, value) pairs: one ``struct`` call for the array."""
    return struct.Struct(">6i" + "id" * n).pack


def _float8_array(values: list[float | None]) -> bytes:
    """A float8[] field; an empty list is NULL (no features recorded)."""
    n = len(values)
    if not n:
        return _NULL
    if None in values:
        header = struct.pack(">iiiii", 1, 1, FLOAT8_OID, n, 1)
        return _field(header + b"".join([_NULL if v is None else _FLOAT8(8, v) for v in values]))
    pairs: list[float | None] = [8] * (2 * n)
    pairs[1::2] = values
    return _float8_array_of(n)(20 + 12 * n, 1, 0, FLOAT8_OID, n, 1, *pairs)


@dataclass(frozen=True)
class TableSpec:
    """A table the sink writes: its columns with their COPY types, and the row of an event
    (``partition`` and ``offset`` locate the Kafka message it came from)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    row: Callable[[Any, int, int], tuple[Any, ...]]
    #: the same row as one binary COPY tuple
    encode: Callable[[Any, int, int], bytes]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(kind for _, kind in self.columns)


def _price(e: PriceTick, partition: int, offset: int) -> tuple[Any, ...]:
    return (
        _time(e.timestamp),
        e.chain,
        e.token,
        e.dex,
        e.price,
        e.volume,
        e.liquidity,
        e.gas_price,
        partition,
        offset,
    )


_PRICE_HEAD = struct.Struct(">hiq").pack
_PRICE_TAIL = struct.Struct(">ididididiiiq").pack


def _price_copy(e: PriceTick, partition: int, offset: int) -> bytes:
    return b"".join(
        (
            _PRICE_HEAD(10, 8, _micros(e.timestamp)),
            _text(e.chain),
            _text(e.token),
            _text(e.dex),
            _PRICE_TAIL(
                8, e.price, 8, e.volume, 8, e.liquidity, 8, e.gas_price, 4, partition, 8, offset
            ),
        )
    )


def _opportunity(e: Opportunity, partition: int, offset: int) -> tuple[Any, ...]:
    return (
        _time(e.timestamp),
        e.opportunity_id,
        e.route_id,
        e.chain,
        e.tokens,
        e.dexes,
        e.input_amount,
        e.expected_output,
        e.gas_estimate,
        e.profit_usd,
        e.confidence_score,
    )


_OPPORTUNITY_HEAD = struct.Struct(">hiq").pack
_OPPORTUNITY_TAIL = struct.Struct(">ididididid").pack


def _opportunity_copy(e: Opportunity, partition: int, offset: int) -> bytes:
    return b"".join(
        (
            _OPPORTUNITY_HEAD(11, 8, _micros(e.timestamp)),
            _field(e.opportunity_id.encode()),
            _text(e.route_id),
            _text(e.chain),
            _text_array(e.tokens),
            _text_array(e.dexes),
            _OPPORTUNITY_TAIL(
                8,
                e.input_amount,
                8,
                e.expected_output,
                8,
                e.gas_estimate,
                8,
                e.profit_usd,
                8,
                e.confidence_score,
            ),
        )
    )


def _prediction(e: Prediction, partition: int, offset: int) -> tuple[Any, ...]:
    return (
        _time(e.opportunity_timestamp),
        _time(e.timestamp),
        e.opportunity_id,
        e.route_id,
        e.chain,
        e.score,
        e.decision,
        e.threshold,
        e.strategy,
        Jsonb(e.model_scores),
        Jsonb(e.model_versions),
        e.latency_ms,
        e.feature_version,
        e.features or None,
    )


_PREDICTION_HEAD = struct.Struct(">hiqiq").pack
_PREDICTION_SCORE = struct.Struct(">idi?id").pack
_LATENCY = struct.Struct(">id").pack


def _jsonb(value: Any) -> bytes:
    data = _json(value)
    return _int4(len(data) + 1) + b"\x01" + data


def _prediction_copy(e: Prediction, partition: int, offset: int) -> bytes:
    return b"".join(
        (
            _PREDICTION_HEAD(14, 8, _micros(e.opportunity_timestamp), 8, _micros(e.timestamp)),
            _field(e.opportunity_id.encode()),
            _text(e.route_id),
            _text(e.chain),
            _PREDICTION_SCORE(8, e.score, 1, e.decision, 8, e.threshold),
            _text(e.strategy),
            _jsonb(e.model_scores),
            _jsonb(e.model_versions),
            _LATENCY(8, e.latency_ms),
            _NULL if e.feature_version is None else _text(e.feature_version),
            _float8_array(e.features),
        )
    )


def _outcome(e: Outcome, partition: int, offset: int) -> tuple[Any, ...]:
    return (
        _time(e.executed_at),
        e.opportunity_id,
        e.route_id,
        e.chain,
        e.success,
        e.realized_profit_usd,
        e.gas_used,
        e.gas_cost_usd,
    )


_OUTCOME_HEAD = struct.Struct(">hiq").pack
_OUTCOME_TAIL = struct.Struct(">i?ididid").pack


def _outcome_copy(e: Outcome, partition: int, offset: int) -> bytes:
    return b"".join(
        (
            _OUTCOME_HEAD(8, 8, _micros(e.executed_at)),
            _field(e.opportunity_id.encode()),
            _text(e.route_id),
            _text(e.chain),
            _OUTCOME_TAIL(1, e.success, 8, e.realized_profit_usd, 8, e.gas_used, 8, e.gas_cost_usd),
        )
    )


F8, TEXT = "float8", "text"
TABLES: dict[type[Event], TableSpec] = {
    PriceTick: TableSpec(
        "price_ticks",
        (
            ("time", "timestamptz"),
            ("chain", TEXT),
            ("token", TEXT),
            ("dex", TEXT),
            ("price", F8),
            ("volume", F8),
            ("liquidity", F8),
            ("gas_price", F8),
            ("kafka_partition", "int4"),
            ("kafka_offset", "int8"),
        ),
        _price,
        _price_copy,
    ),
    Opportunity: TableSpec(
        "opportunities",
        (
            ("time", "timestamptz"),
            ("opportunity_id", TEXT),
            ("route_id", TEXT),
            ("chain", TEXT),
            ("tokens", "text[]"),
            ("dexes", "text[]"),
            ("input_amount", F8),
            ("expected_output", F8),
            ("gas_estimate", F8),
            ("profit_usd", F8),
            ("confidence_score", F8),
        ),
        _opportunity,
        _opportunity_copy,
    ),
    Prediction: TableSpec(
        "predictions",
        (
            ("time", "timestamptz"),
            ("predicted_at", "timestamptz"),
            ("opportunity_id", TEXT),
            ("route_id", TEXT),
            ("chain", TEXT),
            ("score", F8),
            ("decision", "bool"),
            ("threshold", F8),
            ("strategy", TEXT),
            ("model_scores", "jsonb"),
            ("model_versions", "jsonb"),
            ("latency_ms", F8),
            ("feature_version", TEXT),
            ("features", "float8[]"),
        ),
        _prediction,
        _prediction_copy,
    ),
    Outcome: TableSpec(
        "outcomes",
        (
            ("time", "timestamptz"),
            ("opportunity_id", TEXT),
            ("route_id", TEXT),
            ("chain", TEXT),
            ("success", "bool"),
            ("realized_profit_usd", F8),
            ("gas_used", F8),
            ("gas_cost_usd", F8),
        ),
        _outcome,
        _outcome_copy,
    ),
}
