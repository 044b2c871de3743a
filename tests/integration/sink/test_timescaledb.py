"""The TimescaleDB half of the storage on a real TimescaleDB: the policies 0001 and 0004 add do
their work, and a server that has the extension installed but not preloaded is refused before
anything is migrated.

These tests need TimescaleDB on this machine's PostgreSQL (``scripts/timescaledb`` builds and
installs it); on plain PostgreSQL, CI's case, they skip and the rest of the suite runs plain.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Row, create_engine, pool, text

from apex_stream.services.postgres import PostgresService, find_bin, timescaledb_installed
from apex_stream.settings import Settings
from apex_stream.sink import migrations

needs_timescaledb = pytest.mark.skipif(
    not timescaledb_installed(find_bin(Settings().postgres_bin)),
    reason="TimescaleDB is not installed for this PostgreSQL (scripts/timescaledb installs it)",
)
pytestmark = needs_timescaledb


@pytest.fixture
def timescale(database: str) -> Iterator[Engine]:
    """A migrated database on TimescaleDB (skipped where the configured server does not
    preload it), as an autocommit engine: policy jobs commit as they go."""
    migrations.upgrade(database, quiet=True)
    if migrations.current(database)[1] != "timescaledb":
        pytest.skip("the configured PostgreSQL does not preload TimescaleDB")
    engine = create_engine(database, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def run_job(connection: Connection, proc: str, relation: str) -> None:
    """Run the background job ``proc`` of ``relation`` now, as its schedule would."""
    job = connection.execute(
        text(
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE proc_name = :proc AND hypertable_name = :relation"
        ),
        {"proc": proc, "relation": relation},
    ).scalar_one()
    connection.execute(text("CALL run_job(:job)"), {"job": job})


def insert_ticks(connection: Connection, hours_ago: tuple[int, int]) -> int:
    """One tick per minute per token (two tokens) from ``hours_ago[0]`` to ``hours_ago[1]``
    hours back; how many."""
    return connection.execute(
        text(
            """INSERT INTO price_ticks
               SELECT t, 'ethereum', token, 'uniswap', 100 + extract(minute FROM t), 1.0, 1e6,
                      30.0, 0, row_number() OVER ()
               FROM generate_series(now() - make_interval(hours => :a),
                                    now() - make_interval(hours => :b), interval '1 minute') t,
                    unnest(ARRAY['WETH', 'USDC']) token"""
        ),
        {"a": hours_ago[0], "b": hours_ago[1]},
    ).rowcount


def chunks(connection: Connection, table: str) -> list[tuple[bool, object]]:
    return [
        (r.is_compressed, r.range_end)
        for r in connection.execute(
            text(
                "SELECT is_compressed, range_end FROM timescaledb_information.chunks "
                "WHERE hypertable_name = :t ORDER BY range_start"
            ),
            {"t": table},
        )
    ]


def test_compression_policy_compresses_chunks_older_than_a_day(timescale: Engine) -> None:
    with timescale.connect() as connection:
        stored = insert_ticks(connection, (72, 1))  # 3 days to an hour ago, 1-hour chunks
        run_job(connection, "policy_compression", "price_ticks")
        found = chunks(connection, "price_ticks")
        old = connection.execute(
            text("SELECT now() - interval '1 day' - interval '1 hour'")
        ).scalar_one()
        # every chunk that ended more than a day ago is compressed, the newest are not
        assert [c for c, end in found if end < old] == [True] * sum(end < old for _, end in found)
        assert not found[-1][0]
        assert sum(c for c, _ in found) >= 40
        # compressed rows still answer queries, segment by segment
        counted = connection.execute(
            text("SELECT token, count(*) FROM price_ticks GROUP BY token ORDER BY token")
        ).all()
        assert [tuple(r) for r in counted] == [("USDC", stored // 2), ("WETH", stored // 2)]


def test_retention_policy_drops_chunks_older_than_30_days(timescale: Engine) -> None:
    with timescale.connect() as connection:
        insert_ticks(connection, (24 * 40, 24 * 40 - 3))  # 40 days ago: 3 hours of ticks
        recent = insert_ticks(connection, (5, 2))
        month = connection.execute(text("SELECT now() - interval '30 days'")).scalar_one()
        before = chunks(connection, "price_ticks")
        expired = sum(end < month for _, end in before)
        assert expired >= 3
        run_job(connection, "policy_retention", "price_ticks")
        assert len(chunks(connection, "price_ticks")) == len(before) - expired
        left = connection.execute(
            text("SELECT count(*), min(time) > now() - interval '30 days' FROM price_ticks")
        ).one()
        assert tuple(left) == (recent, True)


def test_continuous_aggregates_refresh_and_answer_as_the_views_did(timescale: Engine) -> None:
    aggregates = migration_0004().AGGREGATES
    with timescale.connect() as connection:
        insert_ticks(connection, (30, 0))
        connection.execute(
            text(
                """INSERT INTO predictions (time, predicted_at, opportunity_id, route_id, chain,
                       score, decision, threshold, strategy, model_scores, model_versions,
                       latency_ms)
                   SELECT t, t, 'o' || n, 'r' || (n % 7), 'ethereum', (n % 100) / 100.0,
                          n % 3 = 0, 0.5, 'weighted', '{}', '{"xgboost": "1.0.0"}', n % 13
                   FROM generate_series(1, 5000) n,
                        LATERAL (SELECT now() - make_interval(secs => n * 17)) s(t)"""
            )
        )
        for name in aggregates:
            run_job(connection, "policy_refresh_continuous_aggregate", name)
            materialized = connection.execute(
                text(
                    "SELECT format('%I.%I', materialization_hypertable_schema, "
                    "materialization_hypertable_name) FROM "
                    "timescaledb_information.continuous_aggregates WHERE view_name = :v"
                ),
                {"v": name},
            ).scalar_one()
            assert connection.execute(text(f"SELECT count(*) FROM {materialized}")).scalar()
            # the aggregate (materialized buckets + real-time for the newest) equals 0002's query
            columns = "bucket, " + ", ".join(
                c
                for c in connection.execute(text(f"SELECT * FROM {name} LIMIT 0")).keys()  # noqa: SIM118
                if c != "bucket"
            )
            ordered = f"SELECT {columns} FROM ({{}}) q ORDER BY 1, 2, 3"
            got = connection.execute(text(ordered.format(f"SELECT * FROM {name}"))).all()
            want = connection.execute(text(ordered.format(aggregates[name][0]))).all()
            assert len(got) > 100
            assert rounded(got) == rounded(want)


def rounded(rows: Sequence[Row[Any]]) -> list[tuple[object, ...]]:
    """Rows with floats to 9 significant digits (the aggregate and the query sum in different
    orders)."""
    return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in r) for r in rows]


def migration_0004() -> object:
    from tests.integration.sink.test_migrations import migration

    return migration("0004")


@pytest.fixture
def unloaded_cluster(free_port: int) -> Iterator[str]:
    """A private cluster where TimescaleDB is installed but not preloaded (a package installed,
    the server not configured): the database URL."""
    folder = Path(tempfile.mkdtemp(prefix="apex-tsdb-unloaded-"))
    folder.chmod(0o755)
    settings = Settings(postgres_port=free_port, postgres_data=folder / "data")
    service = PostgresService(settings, timescaledb=False)
    service.start()
    yield settings.db_url
    service.stop()
    shutil.rmtree(folder, ignore_errors=True)


def cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apex_stream.cli", *args],
        env=os.environ | {"DATABASE_URL": url, "COLUMNS": "200"} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_installed_but_not_preloaded_extension_is_refused_with_its_fix(
    unloaded_cluster: str,
) -> None:
    upgrade = cli(unloaded_cluster, "db", "upgrade")
    assert upgrade.returncode != 0
    out = " ".join((upgrade.stdout + upgrade.stderr).split())  # as one line, not as wrapped
    assert "shared_preload_libraries = 'timescaledb'" in out and "APEX_STORAGE=postgresql" in out
    assert "Traceback" not in out
    assert migrations.current(unloaded_cluster) == (None, None)  # nothing half-migrated
    tables = create_engine(unloaded_cluster, poolclass=pool.NullPool)
    with tables.connect() as connection:
        assert not connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).all()
    tables.dispose()

    current = cli(unloaded_cluster, "db", "current")
    assert current.returncode == 1 and "shared_preload_libraries" in current.stdout, current.stdout
    status = cli(unloaded_cluster, "status")
    assert status.returncode == 3 and "shared_preload_libraries" in status.stdout

    # the opt-in fallback: plain PostgreSQL tables, and the checks are satisfied
    plain = cli(unloaded_cluster, "db", "upgrade", APEX_STORAGE="postgresql")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert migrations.current(unloaded_cluster) == ("0005", "postgresql")
    assert cli(unloaded_cluster, "db", "current").returncode == 0
