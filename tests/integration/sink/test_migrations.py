"""Schema migrations on the real PostgreSQL, each test in a database of its own."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from sqlalchemy import create_engine, pool, text

from apex_stream.resources import MIGRATIONS
from apex_stream.sink import migrations
from apex_stream.sink.rows import TABLES
from apex_stream.sink.writer import write
from tests.integration.sink.test_writer import count, simulated_rows

HEAD = "0005"
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


def test_migrations_upgrade_and_downgrade_on_empty_and_populated_databases(database: str) -> None:
    assert migrations.current(database) == (None, None)
    migrations.upgrade(database, quiet=True)
    assert set(EVENT_TABLES) <= tables(database)
    schema = migrations.inspect(database)
    offered = schema.offer.available and schema.offer.preloaded
    assert schema.revision == HEAD
    assert schema.storage == ("timescaledb" if offered else "postgresql") and not schema.problem

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


def migration(name: str) -> ModuleType:
    """A migration script as a module (their file names are not importable)."""
    path = next((MIGRATIONS / "versions").glob(f"{name}_*.py"))
    spec = importlib.util.spec_from_file_location(f"migration_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_continuous_aggregates_are_the_views_on_timescaledb_and_absent_here(database: str) -> None:
    """0004's continuous aggregates run exactly 0002's queries (TimescaleDB buckets), so the
    analytics answer the same on both; on PostgreSQL 0004 leaves the views as they are."""
    views = migration("0002").VIEWS.format(
        minute="time_bucket('1 minute', time)", hour="time_bucket('1 hour', o.time)"
    )
    for name, (query, _) in migration("0004").AGGREGATES.items():
        assert f"CREATE VIEW {name} AS{query};" in views

    migrations.upgrade(database, quiet=True)
    engine = create_engine(database, poolclass=pool.NullPool)
    with engine.connect() as connection:
        kinds = dict(
            connection.execute(
                text(
                    "SELECT relname, relkind FROM pg_class WHERE relname IN "
                    "('predictions_per_minute', 'outcomes_per_hour', 'token_summary_per_minute')"
                )
            ).all()
        )
    engine.dispose()
    if migrations.current(database)[1] == "postgresql":
        assert kinds == dict.fromkeys(kinds, "v") and len(kinds) == 3
    migrations.downgrade(database, "0003", quiet=True)
    migrations.upgrade(database, quiet=True)
