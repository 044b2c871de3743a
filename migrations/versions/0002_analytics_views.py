"""Analytics views: predictions per minute, outcomes per hour, per-token market summaries.

Fixed buckets use TimescaleDB's ``time_bucket`` when the schema was created on TimescaleDB and
PostgreSQL's ``date_bin`` (origin 2000-01-03, time_bucket's default) otherwise: the same buckets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = """
CREATE VIEW predictions_per_minute AS
SELECT {minute} AS bucket,
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
GROUP BY 1, 2;

-- outcomes joined with the prediction of their opportunity; "executed" = the model said execute
CREATE VIEW outcomes_per_hour AS
SELECT {hour} AS bucket,
       o.chain,
       o.route_id,
       p.model_versions::text AS model_versions,
       count(*) AS outcomes,
       avg(o.success::int)::float8 AS win_rate,
       count(*) FILTER (WHERE p.decision) AS executed,
       (avg(o.success::int) FILTER (WHERE p.decision))::float8 AS precision,
       coalesce(sum(o.realized_profit_usd) FILTER (WHERE p.decision), 0) AS realized_profit_usd,
       coalesce(sum(o.gas_cost_usd) FILTER (WHERE p.decision), 0) AS gas_spent_usd
FROM outcomes o
JOIN predictions p USING (opportunity_id)
GROUP BY 1, 2, 3, 4;

CREATE VIEW token_summary_per_minute AS
SELECT {minute} AS bucket,
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
GROUP BY 1, 2, 3;
"""

BUCKETS = {
    "timescaledb": ("time_bucket('1 minute', {t})", "time_bucket('1 hour', {t})"),
    "postgresql": (
        "date_bin('1 minute', {t}, '2000-01-03')",
        "date_bin('1 hour', {t}, '2000-01-03')",
    ),
}


def upgrade() -> None:
    storage = (
        op.get_bind()
        .exec_driver_sql("SELECT value FROM apex_meta WHERE key = 'storage'")
        .scalar_one()
    )
    minute, hour = BUCKETS[storage]
    op.execute(VIEWS.format(minute=minute.format(t="time"), hour=hour.format(t="o.time")))


def downgrade() -> None:
    op.execute("DROP VIEW token_summary_per_minute, outcomes_per_hour, predictions_per_minute")
