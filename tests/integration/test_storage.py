"""Schema migrations and the idempotent COPY writer on the real PostgreSQL, each test in a
database of its own."""

from __future__ import annotations

from sqlalchemy import create_engine, pool, text

from apex_stream.events import Opportunity, Outcome, Prediction, PriceTick
from apex_stream.simulator import MarketSimulator
from apex_stream.sink import migrations
from apex_stream.sink.rows import TABLES
from apex_stream.sink.writer import write

EVENT_TABLES = ("price_ticks", "opportunities", "predictions", "outcomes", "model_versions")


def tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        found = set(rows)
    engine.dispose()
    return found


def count(url: str, table: str) -> int:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        n = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return n


def simulated_rows(n: int) -> dict[type, list[tuple]]:
    steps = list(MarketSimulator(8).run(opportunities=n))
    events: dict[type, list] = {
        PriceTick: [p for s in steps for p in s.prices],
        Opportunity: [o for s in steps for o in s.opportunities],
        Outcome: [o for s in steps for o in s.outcomes],
    }
    events[Prediction] = [
        Prediction(
            opportunity_id=o.opportunity_id,
            route_id=o.route_id,
            chain=o.chain,
            score=0.7,
            decision=True,
            threshold=0.5,
            strategy="weighted",
            model_scores={"xgboost": 0.7},
            model_versions={"xgboost": "1.0.0"},
            latency_ms=3.0,
            opportunity_timestamp=o.timestamp,
            timestamp=o.timestamp + 0.01,
        )
        for o in events[Opportunity]
    ]
    return {
        cls: [TABLES[cls].row(e, 0, i) for i, e in enumerate(evs)] for cls, evs in events.items()
    }


def test_migrations_upgrade_and_downgrade_on_empty_and_populated_databases(database: str) -> None:
    assert migrations.current(database) == (None, None)
    migrations.upgrade(database, quiet=True)
    assert set(EVENT_TABLES) <= tables(database)
    revision, storage = migrations.current(database)
    assert revision == "0003" and storage in {"postgresql", "timescaledb"}

    migrations.downgrade(database, "base", quiet=True)  # empty
    assert not set(EVENT_TABLES) & tables(database)

    migrations.upgrade(database, quiet=True)
    engine = create_engine(database, poolclass=pool.NullPool)
    for cls, rows in simulated_rows(500).items():
        assert write(engine, TABLES[cls], rows) == len(rows) > 0
    engine.dispose()
    migrations.downgrade(database, "base", quiet=True)  # with data
    assert not set(EVENT_TABLES) & tables(database)
    migrations.upgrade(database, quiet=True)
    assert count(database, "opportunities") == 0


def test_copy_writer_is_idempotent_and_keeps_values(database: str) -> None:
    migrations.upgrade(database, quiet=True)
    engine = create_engine(database, poolclass=pool.NullPool)
    rows = simulated_rows(3_000)
    for cls, batch in rows.items():
        spec = TABLES[cls]
        assert write(engine, spec, batch) == len(batch)
        assert write(engine, spec, batch) == 0  # a redelivery adds nothing
        assert write(engine, spec, batch[: len(batch) // 2]) == 0
        assert count(database, spec.name) == len(batch)
    first = rows[Opportunity][0]
    with engine.connect() as connection:
        stored = connection.execute(
            text(
                "SELECT time, route_id, tokens, dexes, profit_usd FROM opportunities "
                "WHERE opportunity_id = :id"
            ),
            {"id": first[1]},
        ).one()
        scores = connection.execute(
            text("SELECT model_scores ->> 'xgboost' FROM predictions WHERE opportunity_id = :id"),
            {"id": first[1]},
        ).scalar_one()
    engine.dispose()
    assert stored == (first[0], first[2], first[4], first[5], first[9])
    assert float(scores) == 0.7
