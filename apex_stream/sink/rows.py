"""Events as database rows: each table's columns, COPY types, and a converter per event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from ..events import Event, Opportunity, Outcome, Prediction, PriceTick


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True)
class TableSpec:
    """A table the sink writes: its columns with their COPY types, and the row of an event
    (``partition`` and ``offset`` locate the Kafka message it came from)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    row: Callable[[Any, int, int], tuple[Any, ...]]

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
    ),
}
