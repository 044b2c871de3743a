"""`apex-stream models train` on a user's history: from the shipped example file and from a
database the sink's own writer filled, each into a models folder a real worker then scores with."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, make_url, pool

from apex_stream.client import EventProducer
from apex_stream.events import Opportunity, Outcome, Prediction, PriceTick, decode
from apex_stream.features import FEATURES
from apex_stream.inference.members import MEMBERS
from apex_stream.inference.registry import MANIFEST
from apex_stream.settings import ROOT, Settings
from apex_stream.simulator import MarketSimulator
from apex_stream.sink import migrations
from apex_stream.sink.rows import TABLES
from apex_stream.sink.writer import write
from apex_stream.training.history import WARMUP_S, Events, load_database, replay
from tests.integration.test_worker import create_topics
from tests.support.processes import cli
from tests.support.waiting import wait_for
from tests.support.worker import collect, metrics, running_worker

EXAMPLE = ROOT / "examples" / "history.csv"
pytestmark = pytest.mark.slow


def simulated(n: int, seed: int, ago: float = 3_600) -> Events:
    """``n`` opportunities with their market and outcomes, stamped from ``ago`` seconds back
    (the database keeps recent history: TimescaleDB's retention drops price ticks after 30
    days)."""
    sim = MarketSimulator(seed, start_time=time.time() - ago)
    prices, opportunities, outcomes = [], [], []
    for step in sim.run(opportunities=n):
        prices += step.prices
        opportunities += step.opportunities
        outcomes += step.outcomes
    return Events(prices, opportunities, outcomes)


def store(url: str, events: Events) -> None:
    """The events as the sink stores them: its rows, written by its COPY writer."""
    migrations.upgrade(url, quiet=True)
    engine = create_engine(url, poolclass=pool.NullPool)
    for cls, items in (
        (PriceTick, events.prices),
        (Opportunity, events.opportunities),
        (Outcome, events.outcomes),
    ):
        spec = TABLES[cls]
        assert write(engine, spec, [spec.encode(e, 0, i) for i, e in enumerate(items)]) == len(
            items
        )
    engine.dispose()


def train_command(models: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`apex-stream models train ARGS` into ``models``; what it printed."""
    done = cli(
        "models",
        "train",
        *args,
        env=os.environ | {"APEX_MODELS_DIR": str(models), "COLUMNS": "500"} | (env or {}),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def manifest(models: Path) -> dict:
    """The manifest entries of ``models`` by name."""
    return {e["name"]: e for e in json.loads((models / MANIFEST).read_text())["models"]}


async def scored_by(settings: Settings, tmp_path: Path, port: int, models: Path) -> None:
    """A worker on ``models`` scores a fresh market with every member of the trained version."""
    version = json.loads((models / MANIFEST).read_text())["models"][0]["version"]
    market = simulated(300, seed=31)
    with running_worker(
        settings, port, tmp_path / f"worker-{version}.log", {"APEX_MODELS_DIR": str(models)}
    ):
        async with EventProducer(settings) as producer:
            await producer.send_many(market.prices)
            await wait_for(
                lambda: metrics(port).get("apex_price_ticks_total", 0) >= len(market.prices),
                60,
                "the price ticks applied",
            )
            await producer.send_many(market.opportunities)
        messages = await collect(settings, "predictions", len(market.opportunities), 120)
    predictions = [decode(m.value, Prediction) for m in messages]
    assert {p.opportunity_id for p in predictions} == {
        o.opportunity_id for o in market.opportunities
    }
    for p in predictions:
        assert p.model_versions == dict.fromkeys(MEMBERS, version)
        assert set(p.voters or ()) == set(MEMBERS) and 0.0 <= p.score <= 1.0
    assert len({round(p.score, 6) for p in predictions}) > 100  # the models tell routes apart


async def test_trained_on_the_example_file_a_worker_scores(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    await create_topics(settings)
    train_command(tmp_path / "models", "--version", "2.0.0", "--from", str(EXAMPLE))
    trained = manifest(tmp_path / "models")
    for name in (*MEMBERS, "engine"):
        entry = trained[name]
        assert entry["status"] == "active" and entry["params"]["source"] == "file history.csv"
        assert entry["metrics"]["test_auc"] > 0.6  # on the example's last 200 outcomes
        assert entry["metrics"]["rows"] >= 1_000
        assert "truth_auc_test" not in entry["metrics"]  # a user's history has no hidden truth
        assert entry["metrics"]["history_from"] < entry["metrics"]["history_to"]
    await scored_by(settings, tmp_path, free_port, tmp_path / "models")


async def test_trained_on_the_database_a_worker_scores(
    settings: Settings, database: str, tmp_path: Path, free_port: int
) -> None:
    await create_topics(settings)
    events = simulated(3_000, seed=30)
    # older opportunities, whose first price ticks start the stored market: without --since
    # training starts once that market has warmed up, after these
    older = simulated(100, seed=29, ago=3_600 + WARMUP_S + 120)
    store(
        database,
        Events(
            older.prices + events.prices,
            older.opportunities + events.opportunities,
            older.outcomes + events.outcomes,
        ),
    )
    printed = train_command(
        tmp_path / "models", "--version", "3.0.0", "--from-db", env={"DATABASE_URL": database}
    )
    oldest = min(p.timestamp for p in older.prices)
    start = datetime.fromtimestamp(oldest + WARMUP_S, UTC).isoformat(timespec="seconds")
    assert f"opportunities since {start}" in printed
    assert "100 older opportunities left out" in printed
    trained = manifest(tmp_path / "models")
    stored = replay(
        Events(older.prices + events.prices, events.opportunities, events.outcomes)
    ).data
    covered = (stored.X[:, FEATURES.index("market_coverage")] > 0).mean()
    assert f"market state for {covered:.1%} of those with an outcome" in printed
    for name in (*MEMBERS, "engine"):
        entry = trained[name]
        assert entry["status"] == "active" and entry["params"]["source"] == "database"
        assert entry["metrics"]["rows"] == len(stored)
        assert entry["metrics"]["test_auc"] > 0.6

    # the stored history replays to the features of the events themselves (times are stored
    # to the microsecond, so a quote's age may differ in the last digits)
    engine = create_engine(database, poolclass=pool.NullPool)
    loaded = load_database(engine)
    assert np.allclose(loaded.X, stored.X, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert np.array_equal(loaded.y, stored.y)
    middle = float(np.median(stored.timestamp))
    since = load_database(engine, since=datetime.fromtimestamp(middle, UTC))
    engine.dispose()
    assert since.timestamp.min() >= middle - 1e-6
    assert abs(len(since) - len(stored) / 2) < 0.02 * len(stored)

    await scored_by(settings, tmp_path, free_port, tmp_path / "models")


def test_a_database_down_or_not_migrated_is_named_with_its_fix(
    database: str, tmp_path: Path, free_port: int
) -> None:
    down = make_url(database).set(host="127.0.0.1", port=free_port)
    for url, fix in (
        (
            down.render_as_string(hide_password=False),
            "start the local services with `apex-stream up`",
        ),
        (database, "run `apex-stream db upgrade`"),
    ):
        done = cli(
            "models",
            "train",
            "--from-db",
            env=os.environ
            | {"APEX_MODELS_DIR": str(tmp_path / "models"), "COLUMNS": "500", "DATABASE_URL": url},
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert fix in done.stdout and "DATABASE_URL" in done.stdout
    assert not (tmp_path / "models").exists()
