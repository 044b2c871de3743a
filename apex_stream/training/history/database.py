"""The history the sink stored: price ticks, opportunities and outcomes of a time window read
from its tables as events (only the window's rows, with the price ticks of its warm-up)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from .files import FILES
from .rows import Events, HistoryError, Rows, events_of

#: Price ticks read before the first opportunity (s): every decayed statistic of the market
#: state (the slowest has a 300 s time constant) has warmed up.
WARMUP_S = 1_800.0

_SPAN = "time >= :since AND time < :until"
PRICES_SQL = text(
    "SELECT extract(epoch FROM time)::float8 AS timestamp, chain, token, dex, price, volume, "
    "liquidity, gas_price FROM price_ticks WHERE time >= :warm AND time < :until "
    "ORDER BY time, kafka_partition, kafka_offset"
)
OPPORTUNITIES_SQL = text(
    "SELECT extract(epoch FROM time)::float8 AS timestamp, opportunity_id, route_id, chain, "
    "tokens, dexes, input_amount, expected_output, gas_estimate, profit_usd, confidence_score "
    f"FROM opportunities WHERE {_SPAN} ORDER BY time"
)
OUTCOMES_SQL = text(
    "SELECT extract(epoch FROM time)::float8 AS executed_at, opportunity_id, route_id, chain, "
    "success, realized_profit_usd, gas_used, gas_cost_usd FROM outcomes WHERE opportunity_id IN "
    f"(SELECT opportunity_id FROM opportunities WHERE {_SPAN}) ORDER BY time"
)
OLDEST_TICK_SQL = text("SELECT min(time) FROM price_ticks")
OLDER_SQL = text("SELECT count(*) FROM opportunities WHERE time < :since AND time < :until")
_EPOCH = datetime.fromtimestamp(0, UTC)
_END = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Stored:
    """The events of a window of the database, and a description of the window."""

    events: Events
    source: str


def database_events(
    engine: Engine, *, since: datetime | None = None, until: datetime | None = None
) -> Stored:
    """The stored opportunities with ``since <= time < until``, their outcomes, and the price
    ticks from ``WARMUP_S`` before ``since``. Without ``since``, from the oldest stored price
    tick plus ``WARMUP_S``: price ticks are kept for less time than opportunities (TimescaleDB
    retention, migration 0001), and older opportunities would meet no market state."""
    url = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            end = until or _END
            start, source = since or _EPOCH, "the database"
            if since is None:
                start, source = _default_start(connection, end)
            warm = datetime.fromtimestamp(max(start.timestamp() - WARMUP_S, 0), UTC)
            params = {"since": start, "until": end, "warm": warm}
            rows = {}
            for kind, sql in (
                ("price", PRICES_SQL),
                ("opportunity", OPPORTUNITIES_SQL),
                ("outcome", OUTCOMES_SQL),
            ):
                records = [dict(r._mapping) for r in connection.execute(sql, params)]
                rows[kind] = Rows(records, f"stored {FILES[kind]} row", range(1, len(records) + 1))
    except OperationalError as exc:
        raise HistoryError(
            f"cannot reach the database {url} ({_first_line(exc)}): start the local services "
            "with `apex-stream up`, or set DATABASE_URL to your database"
        ) from None
    except ProgrammingError as exc:
        raise HistoryError(
            f"the database {url} lacks apex-stream's tables ({_first_line(exc)}): run "
            "`apex-stream db upgrade` (and `apex-stream sink` to fill them), or "
            "check DATABASE_URL"
        ) from None
    except DBAPIError as exc:
        raise HistoryError(
            f"reading the database {url} failed ({_first_line(exc)}): check DATABASE_URL and "
            "run `apex-stream db upgrade`"
        ) from None
    return Stored(events_of(rows), source)


def _default_start(connection: Connection, until: datetime) -> tuple[datetime, str]:
    """The oldest stored price tick plus ``WARMUP_S``, and what starting there leaves out."""
    oldest = connection.execute(OLDEST_TICK_SQL).scalar()
    if oldest is None:  # no market state at all: the replay's checks say so
        return _EPOCH, "the database"
    start = datetime.fromtimestamp(oldest.timestamp() + WARMUP_S, UTC)
    older = connection.execute(OLDER_SQL, {"since": start, "until": until}).scalar() or 0
    stamp = start.isoformat(timespec="seconds")
    return start, (
        f"the database (opportunities since {stamp}: the oldest stored price tick and "
        f"{WARMUP_S / 60:.0f} min of market warm-up; {older:,} older opportunities left out, "
        "give --since to choose)"
    )


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc).__name__
