"""TimescaleDB continuous aggregates for the per-minute analytics; a no-op on PostgreSQL.

When the schema was created on TimescaleDB (``apex_meta.storage``), the views
``predictions_per_minute`` and ``token_summary_per_minute`` of revision 0002 become continuous
aggregates of the same name, columns and query: materialized by a refresh policy, with
real-time aggregation (``materialized_only = false``) so the buckets not materialized yet are
computed from the raw rows at query time and every query answers as the view did.

Choices, for TimescaleDB 2.22 on PostgreSQL 15 (docker/compose.yaml):

- The aggregates are the finalized form (the only one TimescaleDB creates on PostgreSQL 15
  since 2.7), which stores each bucket's final value and accepts any aggregate, so the exact
  ``percentile_cont`` percentiles stay: no toolkit extension (``percentile_agg``) needed, and
  every bucket is exact because a refresh recomputes whole buckets.
- ``outcomes_per_hour`` stays a view: it joins outcomes with predictions, two hypertables, and
  a continuous aggregate may join a hypertable with at most one plain table (since 2.10).
- Created ``WITH NO DATA`` (``WITH DATA`` cannot run inside the migration's transaction), then
  refreshed once over all existing rows, outside it (Alembic's autocommit block): otherwise
  buckets older than the policy's window would never be materialized and would drop out of
  the view once the first refresh moves the watermark past them.
- Refresh windows lie inside the retention periods of 0001 (a refresh over chunks that
  retention has dropped would empty those buckets): predictions (kept 180 days) refresh the
  last 7 days, prices (kept 30 days) the last 2 days, every minute, leaving the current minute
  to real-time aggregation. Rows arriving later than the window (a sink backlog of days) need
  ``CALL refresh_continuous_aggregate('<name>', '<from>', '<to>')``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: name -> (the SELECT of revision 0002 with TimescaleDB buckets, refresh window start offset)
AGGREGATES = {
    "predictions_per_minute": (
        """
SELECT time_bucket('1 minute', time) AS bucket,
       model_versions::text AS model_versions,
       count(*) AS predictions,
       avg(decision::int)::float8 AS executable_share,
       avg(score) AS mean_score,
       percentile_cont(0.1) WITHIN GROUP (ORDER BY score) AS score_p10,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY score) AS score_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY score) AS score_p90,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS latency_p99_ms
FROM predictions
GROUP BY 1, 2""",
        "7 days",
    ),
    "token_summary_per_minute": (
        """
SELECT time_bucket('1 minute', time) AS bucket,
       chain,
       token,
       count(*) AS ticks,
       min(price) AS price_min,
       max(price) AS price_max,
       avg(price) AS price_mean,
       stddev_samp(ln(price)) AS log_price_stddev,
       avg(liquidity) AS liquidity_mean,
       min(liquidity) AS liquidity_min,
       sum(volume) AS volume
FROM price_ticks
GROUP BY 1, 2, 3""",
        "2 days",
    ),
}


def storage() -> str:
    value: str = (
        op.get_bind()
        .exec_driver_sql("SELECT value FROM apex_meta WHERE key = 'storage'")
        .scalar_one()
    )
    return value


def upgrade() -> None:
    if storage() != "timescaledb":
        return  # PostgreSQL keeps the views of 0002
    for name, (query, start_offset) in AGGREGATES.items():
        op.execute(f"DROP VIEW {name}")
        op.execute(
            f"CREATE MATERIALIZED VIEW {name} "
            "WITH (timescaledb.continuous, timescaledb.materialized_only = false) "
            f"AS {query} WITH NO DATA"
        )
        op.execute(
            f"SELECT add_continuous_aggregate_policy('{name}', "
            f"start_offset => INTERVAL '{start_offset}', end_offset => INTERVAL '1 minute', "
            "schedule_interval => INTERVAL '1 minute')"
        )
    # a refresh runs in transactions of its own: commit the above, then materialize the rows
    # stored so far, up to where the policy's window ends (an open end would put the
    # watermark past the newest row and hide the live minute from real-time aggregation)
    with op.get_context().autocommit_block():
        for name in AGGREGATES:
            op.execute(
                f"CALL refresh_continuous_aggregate('{name}', NULL, now() - INTERVAL '1 minute')"
            )


def downgrade() -> None:
    if storage() != "timescaledb":
        return
    for name, (query, _) in AGGREGATES.items():
        op.execute(f"DROP MATERIALIZED VIEW {name}")  # drops its refresh policy too
        op.execute(f"CREATE VIEW {name} AS {query}")
