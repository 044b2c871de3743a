"""`apex-stream analytics NAME`: the queries users run, over the analytics views."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # SQLAlchemy loads when a query runs: the CLI lists QUERIES on every command
    from sqlalchemy import Engine

#: name -> (what it answers, SQL with a :since parameter)
QUERIES: dict[str, tuple[str, str]] = {
    "predictions-per-minute": (
        "prediction volume, executable share, score distribution and latency per minute and "
        "model versions",
        "SELECT * FROM predictions_per_minute WHERE bucket >= :since "
        "ORDER BY bucket, model_versions",
    ),
    "outcomes-per-hour": (
        "win rate, precision, realized profit and gas spent per hour, chain, route and model "
        "versions",
        "SELECT * FROM outcomes_per_hour WHERE bucket >= :since "
        "ORDER BY bucket, chain, route_id, model_versions",
    ),
    "ab-comparison": (
        "model versions side by side over the same window",
        """SELECT model_versions,
                  sum(outcomes) AS outcomes,
                  sum(executed) AS executed,
                  sum(win_rate * outcomes) / sum(outcomes) AS win_rate,
                  sum(precision * executed) FILTER (WHERE executed > 0)
                      / nullif(sum(executed), 0) AS precision,
                  sum(realized_profit_usd) AS realized_profit_usd,
                  sum(gas_spent_usd) AS gas_spent_usd
           FROM outcomes_per_hour WHERE bucket >= :since
           GROUP BY model_versions ORDER BY model_versions""",
    ),
    "token-summary": (
        "price, volatility and liquidity per chain and token over the window",
        """SELECT chain, token, sum(ticks) AS ticks, min(price_min) AS price_min,
                  max(price_max) AS price_max, sum(price_mean * ticks) / sum(ticks) AS price_mean,
                  avg(log_price_stddev) AS mean_minute_log_price_stddev,
                  sum(liquidity_mean * ticks) / sum(ticks) AS liquidity_mean,
                  min(liquidity_min) AS liquidity_min, sum(volume) AS volume
           FROM token_summary_per_minute WHERE bucket >= :since
           GROUP BY chain, token ORDER BY chain, token""",
    ),
}


def run(engine: Engine, name: str, since: datetime) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of one analytics query from ``since`` on."""
    from sqlalchemy import text

    with engine.connect() as connection:
        result = connection.execute(text(QUERIES[name][1]), {"since": since})
        return list(result.keys()), [tuple(row) for row in result]
