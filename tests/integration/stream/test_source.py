"""The batch data path on the real broker and database: a worker killed with SIGKILL three
times during a stream loses nothing, a second worker started mid-stream takes over partitions
with their join state, and an outcome that comes before its opportunity joins when the
opportunity is scored."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, pool, text

from apex_stream.client import EventProducer, kafka_consumer
from apex_stream.errors import TopicError
from apex_stream.events import Prediction, decode
from apex_stream.settings import Settings
from apex_stream.simulator import MarketSimulator, SimConfig
from apex_stream.sink import migrations
from apex_stream.stream.source import skip_backlog
from apex_stream.topics import TopicAdmin
from tests.support.events import opportunity, outcome_for
from tests.support.processes import running_command
from tests.support.waiting import wait_for
from tests.support.worker import get, metrics, running_worker, worker_env

pytestmark = pytest.mark.slow

#: Outcomes that never meet their opportunity are given up after this (and counted).
WAIT = {"APEX_OUTCOME_WAIT_S": "10"}


class Market:
    """The simulated market at ``rate`` opportunities/s (prices, opportunities, one outcome
    each), produced in real time."""

    def __init__(self, settings: Settings, rate: float, total: int, seed: int) -> None:
        self.settings, self.rate, self.total = settings, rate, total
        config = SimConfig(opportunity_rate=rate)
        start = time.time() - 1
        self.steps = MarketSimulator(seed, start_time=start, config=config).run(
            duration=total / rate + 40, dt=0.1
        )
        self.opportunities: list[str] = []
        self.outcomes = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        async with EventProducer(self.settings) as producer:
            started = time.monotonic()
            wanted: set[str] = set()
            for elapsed, step in enumerate(self.steps):
                room = self.total - len(self.opportunities)
                opportunities = step.opportunities[:room]
                wanted.update(o.opportunity_id for o in opportunities)
                outcomes = [o for o in step.outcomes if o.opportunity_id in wanted]
                await producer.send_many((*step.prices, *opportunities, *outcomes))
                self.opportunities += [o.opportunity_id for o in opportunities]
                self.outcomes += len(outcomes)
                ahead = (elapsed + 1) * 0.1 - (time.monotonic() - started)
                if ahead > 0:
                    await producer.flush()
                    await asyncio.sleep(ahead)
        self.done.set()


def scraped(port: int) -> dict[str, float]:
    """A worker's outcome figures: joined with their features, or given up on."""
    figures = metrics(port)
    return {
        "joined": figures.get('apex_outcomes_total{joined="yes"}', 0.0),
        "expired": figures.get('apex_outcomes_total{joined="no"}', 0.0),
    }


@contextlib.contextmanager
def sink(settings: Settings, database: str, log: Path) -> Iterator[None]:
    env = worker_env(settings, 0) | {"DATABASE_URL": database, "APEX_SINK_METRICS_PORT": "0"}
    with running_command("sink", env, log, lambda: True, 5):
        yield


def stored(database: str) -> dict[str, tuple[int, int]]:
    """(rows, distinct events) per table."""
    engine = create_engine(database, poolclass=pool.NullPool)
    keys = {"opportunities": "opportunity_id", "predictions": "opportunity_id"}
    keys["outcomes"] = "opportunity_id"
    with engine.connect() as connection:
        result = {
            table: tuple(
                connection.execute(
                    text(f"SELECT count(*), count(DISTINCT {key}) FROM {table}")
                ).one()
            )
            for table, key in keys.items()
        }
    engine.dispose()
    return result


async def predicted(settings: Settings, wanted: set[str], timeout: float) -> set[str]:
    """The opportunity ids of `predictions`, read until every wanted one came (or timeout):
    redelivered predictions count once."""
    consumer = kafka_consumer(settings, settings.topic_name("predictions"), from_beginning=True)
    await consumer.start()
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + timeout
        while not wanted <= seen and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                seen.update(decode(m.value, Prediction).opportunity_id for m in batch)
    finally:
        await consumer.stop()
    return seen


async def test_three_kills_lose_nothing_and_store_every_event_once(
    settings: Settings, database: str, tmp_path: Path, free_port: int
) -> None:
    migrations.upgrade(database, quiet=True)
    async with TopicAdmin(settings) as admin:
        await admin.create()
    market = Market(settings, rate=1_000, total=30_000, seed=31)
    port = free_port
    figures = []
    with sink(settings, database, tmp_path / "sink.log"):
        producing = asyncio.create_task(market.run())
        for kill in range(3):
            with running_worker(settings, port, tmp_path / f"worker{kill}.log", WAIT) as worker:
                await asyncio.sleep(6)  # the kill schedule: 6 s of the stream per worker
                figures.append(scraped(port))
                worker.send_signal(signal.SIGKILL)  # no chance to flush or commit
                worker.wait()
        with running_worker(settings, port, tmp_path / "worker3.log", WAIT):
            await producing
            scored = await predicted(settings, set(market.opportunities), timeout=180)
            # every outcome sent has joined or was given up on by now
            await wait_for(
                lambda: (
                    sum(scraped(port).values()) + sum(sum(f.values()) for f in figures)
                    >= market.outcomes
                ),
                90,
                "every outcome accounted for",
            )
            figures.append(scraped(port))
        sent = set(market.opportunities)
        await wait_for(
            lambda: stored(database)["predictions"][1] == len(sent), 120, "the sink's predictions"
        )
        await wait_for(
            lambda: stored(database)["outcomes"][0] == market.outcomes, 60, "the sink's outcomes"
        )
    assert scored == sent  # every opportunity has a prediction (some have two: at least once)
    joined = sum(f["joined"] for f in figures)
    expired = sum(f["expired"] for f in figures)
    print(f"outcomes {market.outcomes}: joined {joined}, given up {expired}")
    assert expired <= 0.01 * market.outcomes
    assert joined >= 0.99 * market.outcomes
    rows = stored(database)
    assert rows["opportunities"] == (len(sent), len(sent))
    assert rows["predictions"] == (len(sent), len(sent))  # redelivered predictions stored once
    assert rows["outcomes"] == (market.outcomes, market.outcomes)


async def test_a_second_worker_takes_over_partitions_mid_stream(
    settings: Settings, tmp_path: Path, free_ports: Callable[[int], list[int]]
) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()
    market = Market(settings, rate=800, total=16_000, seed=32)
    producing = asyncio.create_task(market.run())
    first, second = free_ports(2)
    with running_worker(settings, first, tmp_path / "a.log", WAIT):
        await asyncio.sleep(8)  # mid-stream: the second worker comes 8 s into it
        with running_worker(settings, second, tmp_path / "b.log", WAIT):
            topic = settings.topic_name("opportunities")

            def split() -> bool:
                held = [
                    [a for a in get(p, "/health")["assigned"] if a.startswith(topic)]
                    for p in (first, second)
                ]
                return all(held)

            await wait_for(split, 60, "both workers holding opportunities partitions")
            await producing
            scored = await predicted(settings, set(market.opportunities), timeout=180)
            await wait_for(
                lambda: sum(sum(scraped(p).values()) for p in (first, second)) >= market.outcomes,
                90,
                "every outcome accounted for",
            )
            a, b = scraped(first), scraped(second)
    assert scored == set(market.opportunities)
    print(f"outcomes {market.outcomes}: first worker {a}, second {b}")
    assert b["joined"] > 0  # outcomes after the hand-over joined on the new owner
    assert a["expired"] + b["expired"] <= 0.01 * market.outcomes
    assert a["joined"] + b["joined"] >= 0.99 * market.outcomes


async def test_an_outcome_before_its_opportunity_joins_when_it_is_scored(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()
    port = free_port
    early = opportunity(1, "r-early", ["WETH", "USDC"])
    outcome = outcome_for(early, success=True)
    with running_worker(settings, port, tmp_path / "worker.log"):
        learned = get(port, "/models/summary")["online_learned"]
        async with EventProducer(settings) as producer:
            await producer.send(outcome)
        await wait_for(
            lambda: get(port, "/health")["join"]["outcomes_waiting"] == 1, 30, "the outcome waits"
        )
        async with EventProducer(settings) as producer:
            await producer.send(early)
        await wait_for(
            lambda: get(port, "/health")["join"]["outcomes_waiting"] == 0, 30, "the join"
        )
        summary = get(port, "/models/summary")
    assert summary["online_learned"] == learned + 1
    assert summary["performance"]["xgboost@1.0.0"]["samples"] == 1


async def test_skip_backlog_moves_the_batch_path_to_the_ends_and_refuses_while_a_worker_runs(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()
    app = settings.model_copy(update={"app_id": worker_env(settings, 0)["APEX_APP_ID"]})
    early = [opportunity(i, f"r-skip-{i}", ["WETH", "USDC"]) for i in range(5)]
    async with EventProducer(settings) as producer:
        await producer.send_many([*early, outcome_for(early[0], success=True)])
    assert await skip_backlog(app) == 5
    assert await skip_backlog(app) == 0
    with (
        running_worker(settings, free_port, tmp_path / "worker.log"),
        pytest.raises(TopicError, match="is running"),
    ):
        await skip_backlog(app)
