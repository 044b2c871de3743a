"""The sink on the real broker and database: every message stored exactly once, also across a
replay and across a PostgreSQL outage."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, pool, text

from apex_stream.client import EventProducer, kafka_consumer
from apex_stream.events import Alert, DeadLetter, Metric, Prediction, decode, encode
from apex_stream.services.postgres import PostgresService
from apex_stream.settings import Settings
from apex_stream.simulator import MarketSimulator
from apex_stream.sink import migrations
from apex_stream.sink.agent import Sink
from apex_stream.topics import TopicAdmin, load_specs
from tests.support.events import prediction_for
from tests.support.processes import running_command
from tests.support.waiting import wait_for
from tests.support.worker import collect, running_worker

pytestmark = pytest.mark.slow
TABLE_OF = {
    "prices": "price_ticks",
    "opportunities": "opportunities",
    "predictions": "predictions",
    "outcomes": "outcomes",
}


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        result = {
            t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in TABLE_OF.values()
        }
    engine.dispose()
    return result


def own_group(settings: Settings) -> Settings:
    """The settings with a consumer group of this test's own (test runs sharing the broker
    would otherwise share the sink's group and take each other's partitions)."""
    return settings.model_copy(update={"app_id": f"{settings.app_id}-{settings.topic_prefix}"})


def holds(url: str, expected: dict[str, int]) -> bool:
    """Whether the tables hold ``expected`` rows (not while the database is down)."""
    try:
        return counts(url) == expected
    except Exception:  # noqa: BLE001 - the database may be down on purpose
        return False


async def sink_until(
    settings: Settings, url: str, until: Callable[[Sink], bool], what: str, timeout: float = 180
) -> Sink:
    """Run a sink until ``until(sink)`` holds (the test fails after ``timeout`` s), or until
    it ends by itself (its error is the test's)."""
    stop = asyncio.Event()
    sink = Sink(own_group(settings).model_copy(update={"database_url": url}))
    task = asyncio.create_task(sink.run(stop))
    try:
        await wait_for(lambda: task.done() or until(sink), timeout, what)
    finally:
        stop.set()
        await task
    return sink


async def produced(settings: Settings, n: int, seed: int) -> dict[str, int]:
    async with TopicAdmin(settings) as admin:
        await admin.create()
    steps = list(MarketSimulator(seed, start_time=time.time() - n / 200 - 60).run(opportunities=n))
    events = [e for s in steps for e in (*s.prices, *s.opportunities, *s.outcomes)]
    async with EventProducer(settings) as producer:
        await producer.send_many(events)
    return {
        "prices": sum(len(s.prices) for s in steps),
        "opportunities": n,
        "outcomes": sum(len(s.outcomes) for s in steps),
    }


async def test_fifty_thousand_events_stored_once_and_replay_adds_nothing(
    settings: Settings, database: str, tmp_path: Path, free_port: int
) -> None:
    migrations.upgrade(database, quiet=True)
    sent = await produced(settings, 20_000, seed=12)
    with running_worker(settings, free_port, tmp_path / "worker.log"):
        predictions = await collect(settings, "predictions", 20_000, timeout=180)
    sent["predictions"] = len({decode(m.value, Prediction).opportunity_id for m in predictions})
    assert sum(sent.values()) >= 50_000
    expected = {TABLE_OF[t]: n for t, n in sent.items()}
    first = await sink_until(
        settings, database, lambda _: holds(database, expected), "every event stored"
    )
    assert counts(database) == expected
    # the sink's group offsets reset to the beginning: it reads every message again
    await reset_offsets(own_group(settings))
    again = await sink_until(
        settings,
        database,
        lambda sink: sum(sink.written.values()) >= sum(first.written.values()),
        "every message read and written again",
        timeout=20,
    )
    assert sum(again.written.values()) >= sum(first.written.values()) >= sum(sent.values())
    assert counts(database) == expected


async def reset_offsets(settings: Settings) -> None:
    """Commit the earliest offset of every partition of the sink's topics for the sink's
    (empty) group, as `kafka-consumer-groups --reset-offsets --to-earliest` does."""
    consumer = kafka_consumer(settings, group_id=f"{settings.app_id}-sink")
    specs = load_specs(settings.topics_dir)
    partitions = [
        TopicPartition(settings.topic_name(topic), p)
        for topic in TABLE_OF
        for p in range(specs[topic].partitions)
    ]
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(await consumer.beginning_offsets(partitions))
    finally:
        await consumer.stop()


@pytest.fixture
def private_postgres(free_port: int) -> Iterator[tuple[PostgresService, str]]:
    folder = Path(tempfile.mkdtemp(prefix="apex-sink-pg-"))
    folder.chmod(0o755)
    settings = Settings(postgres_port=free_port, postgres_data=folder / "data")
    service = PostgresService(settings)
    service.start()
    yield service, settings.db_url
    service.stop()
    shutil.rmtree(folder, ignore_errors=True)


async def test_sink_survives_a_database_outage(
    settings: Settings, private_postgres: tuple[PostgresService, str]
) -> None:
    service, url = private_postgres
    migrations.upgrade(url, quiet=True)
    stop = asyncio.Event()
    update = {"database_url": url, "metrics_every_s": 0.5}
    sink = Sink(own_group(settings).model_copy(update=update), batch_records=500)
    task = asyncio.create_task(sink.run(stop))
    sent = await produced(settings, 3_000, seed=13)
    await wait_for(lambda: sum(sink.written.values()) > 0, 120, "the sink's first rows", every=0.1)
    await asyncio.to_thread(service.stop)  # mid-stream: more events arrive while it is down
    more = await produced(settings, 1_000, seed=14)
    expected = {TABLE_OF[t]: sent[t] + more[t] for t in sent} | {"predictions": 0}
    # the sink has waited out 3 s of the outage (reported every 0.5 s) with a backlog
    await wait_for(
        lambda: sink.down_for >= 3 and sink.backlog > 0, 60, "3 s of outage with a backlog"
    )
    assert not task.done()
    await asyncio.to_thread(service.start)
    await wait_for(lambda: counts(url) == expected, 120, "every event stored after the outage")

    async def reported_up() -> bool:
        """The sink's latest metrics message says the database is up."""
        metrics = [decode(m.value, Metric) for m in await collect(settings, "metrics", 10**6, 2)]
        down = [m.values["database_down_s"] for m in metrics if m.source == "sink"]
        return down[-1:] == [0]

    await wait_for(reported_up, 30, "a metrics message after the outage")
    stop.set()
    await task
    assert counts(url) == expected
    alerts = [decode(m.value, Alert) for m in await collect(settings, "alerts", 1, timeout=10)]
    assert alerts and alerts[0].kind == "sink-database" and alerts[0].severity == "critical"
    # the sink's metrics said so too: the outage, and rows written before and after it
    metrics = [decode(m.value, Metric) for m in await collect(settings, "metrics", 10, 10)]
    sink_metrics = [m.values for m in metrics if m.source == "sink"]
    down = [v["database_down_s"] for v in sink_metrics]
    assert max(down) >= 2 and down[-1] == 0
    # what arrived during the outage waited, counted, and was written once it ended
    assert max(v["backlog"] for v in sink_metrics if v["database_down_s"]) > 0
    assert any(m.values.get("rows_per_s.price_ticks", 0) > 0 for m in metrics)


async def test_rows_that_cannot_be_stored_are_dead_lettered_and_the_rest_written(
    settings: Settings, database: str
) -> None:
    migrations.upgrade(database, quiet=True)
    steps = list(MarketSimulator(15, start_time=time.time() - 120).run(opportunities=300))
    prices = [p for s in steps for p in s.prices]
    opportunities = [o for s in steps for o in s.opportunities]
    good = [prediction_for(o, 0.7) for o in opportunities]
    bad = [
        # the database rejects these: a NUL byte in a text, \u0000 in a jsonb
        msgspec.structs.replace(prices[0], token="WE\x00TH"),
        prediction_for(opportunities[0], 0.7, model_versions={"xgboost": "1\x00"}),
        # valid events, but no timestamptz holds this time
        prediction_for(opportunities[1], 0.7, timestamp=1e300),
    ]
    async with TopicAdmin(settings) as admin:
        await admin.create()
    async with EventProducer(settings) as producer:
        await producer.send_many([*prices, *bad, *good])
    expected = {
        "price_ticks": len(prices),
        "opportunities": 0,
        "predictions": len(good),
        "outcomes": 0,
    }
    sink = await sink_until(
        settings, database, lambda _: holds(database, expected), "the valid rows", timeout=60
    )
    assert counts(database) == expected and sink.dead_lettered == len(bad)
    letters = [decode(m.value, DeadLetter) for m in await collect(settings, "dead-letters", 3, 10)]
    reasons = {(d.source_topic.split(".")[-1], d.reason.split(":")[0]) for d in letters}
    assert reasons == {
        ("prices", "rejected by the database"),
        ("predictions", "rejected by the database"),
        ("predictions", "cannot be stored"),
    }
    assert sorted(d.payload for d in letters) == sorted(encode(e).decode() for e in bad)


async def test_two_sinks_in_one_group_share_the_partitions_and_store_everything_once(
    settings: Settings, database: str
) -> None:
    migrations.upgrade(database, quiet=True)
    async with TopicAdmin(settings) as admin:
        await admin.create()
    group = own_group(settings).model_copy(update={"database_url": database})
    sinks = [Sink(group, batch_records=1_000) for _ in range(2)]
    stops = [asyncio.Event() for _ in sinks]
    tasks = [asyncio.create_task(s.run(stop)) for s, stop in zip(sinks, stops, strict=True)]
    await wait_for(
        lambda: all(s.consumer.assignment() for s in sinks),
        60,
        "each sink holding partitions",
        every=0.1,
    )
    assert all(s.consumer.assignment() for s in sinks), "each sink holds partitions"

    async def stored(sent: dict[str, int]) -> None:
        expected = {TABLE_OF[t]: n for t, n in sent.items()} | {"predictions": 0}
        await wait_for(lambda: counts(database) == expected, 120, "every event stored")
        assert counts(database) == expected

    sent = await produced(settings, 10_000, seed=16)
    await stored(sent)
    assert all(sum(s.written.values()) > 0 for s in sinks)
    # one leaves: the group rebalances and the other takes its partitions over
    stops[1].set()
    await tasks[1]
    more = await produced(settings, 5_000, seed=17)
    await stored({t: sent[t] + more[t] for t in sent})
    stops[0].set()
    await tasks[0]


def scrape(port: int) -> dict[tuple[str, str], float]:
    """The sink process's Prometheus samples: (name, table label) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, s.labels.get("table", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_the_sink_process_serves_its_figures_to_prometheus(
    settings: Settings, database: str, tmp_path: Path, free_port: int
) -> None:
    migrations.upgrade(database, quiet=True)
    port = free_port
    env = {
        "APEX_TOPIC_PREFIX": settings.topic_prefix,
        "APEX_APP_ID": own_group(settings).app_id,
        "DATABASE_URL": database,
        "APEX_SINK_METRICS_PORT": str(port),
    }
    with running_command("sink", env, tmp_path / "sink.log", lambda: bool(scrape(port)), 60):
        sent = await produced(settings, 500, seed=18)
        want = {("apex_sink_rows_written_total", TABLE_OF[t]): float(n) for t, n in sent.items()}
        await wait_for(
            lambda: all(scrape(port).get(key) == n for key, n in want.items()),
            60,
            "every row counted in the sink's figures",
        )
        figures = scrape(port)
    assert {key: figures.get(key) for key in want} == want
    assert figures[("apex_sink_dead_letters_total", "")] == 0
    assert figures[("apex_sink_database_down_seconds", "")] == 0
