"""`apex-stream up` / `down`, and the main job (`apex-stream demo`) from cold, on a second,
private pair of services (own folders and ports), so the services the rest of the suite uses
are left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, pool, text

from apex_stream.inference.members import MEMBERS
from apex_stream.services.probe import port_open

KAFKA_PORT, CONTROLLER_PORT, PG_PORT = 29192, 29193, 55499


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apex_stream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def private_env() -> Iterator[dict[str, str]]:
    # a folder the postgres OS user can reach (pytest's tmp_path is private to root)
    tmp_path = Path(tempfile.mkdtemp(prefix="apex-services-"))
    tmp_path.chmod(0o755)
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    jars = Path(env.get("APEX_HOME", Path.home() / ".cache" / "apex-stream"))
    home = tmp_path / "home"
    home.mkdir()
    # share the downloaded jars; everything else is private
    for libs in jars.glob("kafka-*"):
        (home / libs.name).symlink_to(libs)
    yield env | {
        "APEX_HOME": str(home),
        "APEX_KAFKA_PORT": str(KAFKA_PORT),
        "APEX_KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT),
        "APEX_POSTGRES_PORT": str(PG_PORT),
        "APEX_POSTGRES_DATA": str(tmp_path / "pgdata"),
        "APEX_KAFKA_HEAP": "256m",
    }
    shutil.rmtree(tmp_path, ignore_errors=True)


def live_pids(pattern: str) -> list[str]:
    """Pids of running (not zombie) processes whose command line contains ``pattern``."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True).stdout
    return [
        line.split()[0]
        for line in out.splitlines()
        if pattern in line and not line.split()[1].startswith("Z")
    ]


def test_up_twice_is_harmless_and_down_leaves_nothing_running(private_env: dict[str, str]) -> None:
    try:
        first = cli("up", env=private_env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "started" in first.stdout
        assert port_open("127.0.0.1", KAFKA_PORT) and port_open("127.0.0.1", PG_PORT)

        second = cli("up", env=private_env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert second.stdout.count("already up") == 2

        status = cli("status", env=private_env)
        assert status.returncode == 0 and status.stdout.count(" up ") == 2
    finally:
        down = cli("down", env=private_env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not port_open("127.0.0.1", KAFKA_PORT)
    assert not port_open("127.0.0.1", CONTROLLER_PORT)
    assert not port_open("127.0.0.1", PG_PORT)
    assert live_pids(private_env["APEX_HOME"]) == []
    assert live_pids(private_env["APEX_POSTGRES_DATA"]) == []

    status = cli("status", env=private_env)
    assert status.returncode == 3 and status.stdout.count(" down ") == 2
    again = cli("down", env=private_env)
    assert again.returncode == 0 and again.stdout.count("already down") == 2


def test_external_services_are_not_started(private_env: dict[str, str]) -> None:
    env = private_env | {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/x",
    }
    result = cli("up", env=env)
    assert result.returncode == 0
    assert "nothing to start" in result.stdout
    assert not port_open("127.0.0.1", KAFKA_PORT)


def test_demo_starts_everything_from_cold_and_the_market_reaches_the_database(
    private_env: dict[str, str],
) -> None:
    """A minute: long enough for outcomes of every model version to come back (their figures
    are "not known yet" before that, which the view must show rather than crash on)."""
    env = private_env | {
        "APEX_WEB_PORT": "16511",
        "APEX_BRIDGE_PORT": "18775",
        "APEX_SINK_METRICS_PORT": "16512",
        "COLUMNS": "200",  # the final view's table unabridged
    }
    try:
        demo = cli("demo", "--duration", "60", "--rate", "200", env=env)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        for member in MEMBERS:  # the final view's per-model rows
            assert f"{member}@1.0.0" in demo.stdout, demo.stdout[-3000:]
        assert "kafka on 127.0.0.1:29192 (started)" in demo.stdout
        assert "dashboard: http://" in demo.stdout
        url = f"postgresql+psycopg://apex@127.0.0.1:{PG_PORT}/apex"
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
