"""Event tables: price ticks, opportunities, predictions, outcomes and model versions.

One code path (``apex_stream/sink/storage.py``) decides, from what the server offers and
``APEX_STORAGE``, whether the tables become TimescaleDB hypertables (with chunk intervals,
compression and retention policies) or stay plain PostgreSQL tables with time indexes; the
decision is recorded in ``apex_meta``. The decision is made before the first statement, so a
refusal (TimescaleDB installed but not preloaded) leaves the database as it was.

Downgrade drops the hypertables one per statement (TimescaleDB refuses to drop a hypertable
along with other objects), their policies first; the extension itself stays in the database.

Every table is keyed so that a redelivered Kafka message adds no row: events by their id and
event time (hypertables need the time column in unique keys), price ticks by Kafka partition
and offset.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import context, op

from apex_stream.sink.storage import choose, offer

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE apex_meta (key text PRIMARY KEY, value text NOT NULL);

CREATE TABLE price_ticks (
    time timestamptz NOT NULL,
    chain text NOT NULL,
    token text NOT NULL,
    dex text NOT NULL,
    price double precision NOT NULL,
    volume double precision NOT NULL,
    liquidity double precision NOT NULL,
    gas_price double precision NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    UNIQUE (time, kafka_partition, kafka_offset)
);
CREATE INDEX price_ticks_token_time ON price_ticks (chain, token, time DESC);

CREATE TABLE opportunities (
    time timestamptz NOT NULL,
    opportunity_id text NOT NULL,
    route_id text NOT NULL,
    chain text NOT NULL,
    tokens text[] NOT NULL,
    dexes text[] NOT NULL,
    input_amount double precision NOT NULL,
    expected_output double precision NOT NULL,
    gas_estimate double precision NOT NULL,
    profit_usd double precision NOT NULL,
    confidence_score double precision NOT NULL,
    UNIQUE (time, opportunity_id)
);
CREATE INDEX opportunities_route_time ON opportunities (route_id, time DESC);

-- keyed by the opportunity's time: a re-scored opportunity keeps one prediction row
CREATE TABLE predictions (
    time timestamptz NOT NULL,
    predicted_at timestamptz NOT NULL,
    opportunity_id text NOT NULL,
    route_id text NOT NULL,
    chain text NOT NULL,
    score double precision NOT NULL,
    decision boolean NOT NULL,
    threshold double precision NOT NULL,
    strategy text NOT NULL,
    model_scores jsonb NOT NULL,
    model_versions jsonb NOT NULL,
    latency_ms double precision NOT NULL,
    UNIQUE (time, opportunity_id)
);
CREATE INDEX predictions_route_time ON predictions (route_id, time DESC);
CREATE INDEX predictions_opportunity ON predictions (opportunity_id);

CREATE TABLE outcomes (
    time timestamptz NOT NULL,
    opportunity_id text NOT NULL,
    route_id text NOT NULL,
    chain text NOT NULL,
    success boolean NOT NULL,
    realized_profit_usd double precision NOT NULL,
    gas_used double precision NOT NULL,
    gas_cost_usd double precision NOT NULL,
    UNIQUE (time, opportunity_id)
);
CREATE INDEX outcomes_opportunity ON outcomes (opportunity_id);

CREATE TABLE model_versions (
    name text NOT NULL,
    version text NOT NULL,
    type text NOT NULL,
    path text,
    sha256 text,
    feature_version text NOT NULL,
    metrics jsonb NOT NULL,
    created timestamptz NOT NULL,
    status text NOT NULL,
    traffic double precision NOT NULL,
    PRIMARY KEY (name, version)
);
"""

#: (table, chunk interval, compress after, drop after, segment-by columns)
HYPERTABLES = (
    ("price_ticks", "1 hour", "1 day", "30 days", "chain, token"),
    ("opportunities", "1 day", "7 days", "180 days", "chain"),
    ("predictions", "1 day", "7 days", "180 days", "chain"),
    ("outcomes", "1 day", "7 days", "180 days", "chain"),
)


def upgrade() -> None:
    storage = choose(offer(op.get_bind()), context.config.attributes.get("storage", "auto"))
    op.execute(TABLES)
    if storage == "timescaledb":
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        for table, chunk, compress_after, drop_after, segment_by in HYPERTABLES:
            op.execute(
                f"SELECT create_hypertable('{table}', 'time', "
                f"chunk_time_interval => interval '{chunk}')"
            )
            op.execute(
                f"ALTER TABLE {table} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = '{segment_by}')"
            )
            op.execute(f"SELECT add_compression_policy('{table}', interval '{compress_after}')")
            op.execute(f"SELECT add_retention_policy('{table}', interval '{drop_after}')")
    else:
        for table, *_ in HYPERTABLES:
            op.execute(f"CREATE INDEX {table}_time ON {table} (time DESC)")
    op.execute(f"INSERT INTO apex_meta (key, value) VALUES ('storage', '{storage}')")


def downgrade() -> None:
    storage = (
        op.get_bind()
        .exec_driver_sql("SELECT value FROM apex_meta WHERE key = 'storage'")
        .scalar_one()
    )
    op.execute("DROP TABLE model_versions")
    for table, *_ in reversed(HYPERTABLES):
        if storage == "timescaledb":
            op.execute(f"SELECT remove_retention_policy('{table}', if_exists => true)")
            op.execute(f"SELECT remove_compression_policy('{table}', if_exists => true)")
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP TABLE apex_meta")
