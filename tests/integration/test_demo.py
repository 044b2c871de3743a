"""The main job (`apex-stream demo`) from cold, on a private pair of services (the
``private_env`` fixture)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import create_engine, pool, text

from apex_stream.inference.members import MEMBERS
from tests.integration.test_services import ports
from tests.support.processes import cli


def test_demo_starts_everything_from_cold_and_the_market_reaches_the_database(
    private_env: dict[str, str], free_ports: Callable[[int], list[int]]
) -> None:
    """A minute: long enough for outcomes of every model version to come back (their figures
    are "not known yet" before that, which the view must show rather than crash on)."""
    kafka, _, postgres = ports(private_env)
    web, bridge, sink_metrics = free_ports(3)
    env = private_env | {
        "APEX_WEB_PORT": str(web),
        "APEX_BRIDGE_PORT": str(bridge),
        "APEX_SINK_METRICS_PORT": str(sink_metrics),
        "COLUMNS": "200",  # the final view's table unabridged
    }
    try:
        demo = cli("demo", "--duration", "60", "--rate", "200", env=env)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        for member in MEMBERS:  # the final view's per-model rows
            assert f"{member}@1.0.0" in demo.stdout, demo.stdout[-3000:]
        assert f"kafka on 127.0.0.1:{kafka} (started)" in demo.stdout
        assert "dashboard: http://" in demo.stdout
        url = f"postgresql+psycopg://apex@127.0.0.1:{postgres}/apex"
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.connect() as connection:
            stored = {
                table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("opportunities", "predictions", "outcomes")
            }
        engine.dispose()
        # the worker scored the market and the sink stored it (the last seconds may still be
        # in flight when the demo stops: not every opportunity has its prediction stored)
        assert stored["opportunities"] >= 1_000 and stored["predictions"] >= 1_000, stored
    finally:
        cli("down", env=env)
