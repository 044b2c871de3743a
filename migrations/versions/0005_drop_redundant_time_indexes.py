"""Drop the plain-PostgreSQL time indexes that duplicate the unique keys' leading column.

On PostgreSQL, 0001 gave every event table an index on ``(time DESC)`` besides its unique key
``(time, ...)``. A B-tree serves ranges and ordering in either direction, so the unique key
already answers every ``time`` filter and sort (the analytics views group whole tables and use
neither), while each index costs every COPY: without these four the database took 23-47%
more rows/s, per table (bench/sink.md). The other indexes stay: ``(chain, token, time)`` and
``(route_id, time)`` serve per-token and per-route queries, ``opportunity_id`` the joins of
outcomes with predictions. TimescaleDB's hypertables keep their default time index (not
measured there). Downgrade recreates them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("price_ticks", "opportunities", "predictions", "outcomes")


def storage() -> str:
    value: str = (
        op.get_bind()
        .exec_driver_sql("SELECT value FROM apex_meta WHERE key = 'storage'")
        .scalar_one()
    )
    return value


def upgrade() -> None:
    if storage() == "postgresql":
        for table in TABLES:
            op.execute(f"DROP INDEX {table}_time")


def downgrade() -> None:
    if storage() == "postgresql":
        for table in TABLES:
            op.execute(f"CREATE INDEX {table}_time ON {table} (time DESC)")
