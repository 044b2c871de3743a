"""Drill: the broker is killed in the middle of a stream and restarted on the same data; the
worker rides through it without a restart and nothing is lost.

The broker is this test's own (:class:`KafkaService` on free ports, its own data folder, the
jars the shared broker was started from): the broker the rest of the suite uses is left alone.
The pipeline is at least once: every opportunity sent gets a prediction (a redelivered one may
get two), none is dead-lettered, and every outcome sent is joined with its opportunity and
learned by the online learner.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from apex_stream.client import EventProducer, kafka_consumer
from apex_stream.events import Event, Prediction, decode
from apex_stream.services import KafkaService
from apex_stream.services.probe import wait_until
from apex_stream.settings import Settings
from apex_stream.simulator import MarketSimulator
from apex_stream.topics import TopicAdmin
from tests.support.waiting import wait_for
from tests.support.worker import collect, get, metrics, running_worker

pytestmark = [
    pytest.mark.slow,
    # KafkaService leaves its broker running when start() returns, as `apex-stream up` means it
    # to; in this process its Popen object is collected while the broker still runs
    pytest.mark.filterwarnings(r"ignore:subprocess \d+ is still running:ResourceWarning"),
]

#: Opportunities in the stream, sent over about STREAM_S seconds of wall time (plus the outage).
OPPORTUNITIES, STREAM_S = 12_000, 10.0
#: Share of the stream sent before the broker is killed; seconds before it is started again (its
#: start takes another ~10 s).
KILLED_AT, DOWN_S = 0.4, 3.0
#: The topics the batch path consumes.
INPUTS = ("opportunities", "outcomes")


@pytest.fixture
def broker(tmp_path: Path, free_ports: Callable[[int], list[int]]) -> Iterator[KafkaService]:
    """A broker of this test's own, from the jars already fetched for the shared one."""
    port, controller = free_ports(2)
    jars = KafkaService(Settings()).libs.parent
    assert (jars / "libs" / ".complete").exists(), f"no Kafka jars in {jars}: run `apex-stream up`"
    home = tmp_path / "home"
    home.mkdir()
    (home / jars.name).symlink_to(jars)
    service = KafkaService(
        Settings(home=home, kafka_port=port, kafka_controller_port=controller, kafka_heap="256m")
    )
    service.start()
    try:
        yield service
    finally:
        service.stop()


def kill(service: KafkaService, sig: signal.Signals) -> None:
    """Stop the broker with ``sig`` (SIGKILL: no flush, no controlled shutdown)."""
    pid = service.pid()
    assert pid is not None
    os.kill(pid, sig)
    wait_until(lambda: service.pid() is None, 30, f"Kafka pid {pid} to exit")


def stream() -> list[list[Event]]:
    """The simulated market's steps (prices, opportunities, outcomes), stamped in the past."""
    sim = MarketSimulator(13, start_time=time.time() - OPPORTUNITIES / 200 - 5)
    return [
        [*s.prices, *s.opportunities, *s.outcomes] for s in sim.run(opportunities=OPPORTUNITIES)
    ]


async def predictions(settings: Settings, wanted: set[str], timeout: float) -> list[Prediction]:
    """The predictions topic from its start, until every wanted opportunity has one."""
    consumer = kafka_consumer(settings, settings.topic_name("predictions"), from_beginning=True)
    await consumer.start()
    found: list[Prediction] = []
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + timeout
        while not wanted <= seen and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                found += [decode(m.value, Prediction) for m in batch]
                seen.update(p.opportunity_id for p in found[-len(batch) :])
    finally:
        await consumer.stop()
    return found


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
async def test_a_broker_restart_mid_stream_loses_nothing(
    broker: KafkaService, sig: signal.Signals, tmp_path: Path, free_port: int
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=broker.address, topic_prefix=f"t{uuid.uuid4().hex[:10]}."
    )
    async with TopicAdmin(settings) as admin:
        await admin.create()
    steps = stream()
    sent = {e.opportunity_id for step in steps for e in step if e.topic == "opportunities"}
    outcomes = sum(e.topic == "outcomes" for step in steps for e in step)
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.address}
    port = free_port
    with running_worker(settings, port, tmp_path / "worker.log", env) as worker:
        learned = get(port, "/models/summary")["online_learned"]
        outage: asyncio.Future[None] | None = None
        scored_before = 0.0
        # idempotent, and patient enough to wait out the outage: the input is sent exactly once
        async with EventProducer(
            settings, enable_idempotence=True, request_timeout_ms=120_000
        ) as producer:
            for i, step in enumerate(steps):
                await producer.send_many(step)
                await asyncio.sleep(STREAM_S / len(steps))
                if outage is None and i >= KILLED_AT * len(steps):
                    scored_before = total(metrics(port), "apex_opportunities_scored_total")
                    outage = asyncio.ensure_future(asyncio.to_thread(restart, broker, sig))
            assert outage is not None
            await outage
        found = await predictions(settings, sent, timeout=120)
        await wait_for(
            lambda: get(port, "/models/summary")["online_learned"] - learned >= outcomes,
            60,
            "every outcome learned",
            every=1,
        )
        # the batch path measures its lag again after the outage: caught up, nothing behind
        lags = [f'apex_consumer_lag{{topic="{settings.topic_name(t)}"}}' for t in INPUTS]
        await wait_for(
            lambda: [metrics(port).get(lag) for lag in lags] == [0, 0], 15, "a lag of 0 measured"
        )
        figures = metrics(port)
        now_learned = get(port, "/models/summary")["online_learned"]
        letters = await collect(settings, "dead-letters", 1, timeout=3)
        assert worker.poll() is None, "the worker exited"
    scored = {p.opportunity_id for p in found}
    print(
        f"{len(sent)} opportunities, {len(found)} predictions ({len(found) - len(scored)} "
        f"redelivered), {outcomes} outcomes; {scored_before:.0f} scored before the kill"
    )
    assert 0 < scored_before < len(sent)  # the broker went down in the middle of the stream
    assert scored == sent  # at least one prediction each
    assert letters == [] and total(figures, "apex_dead_letters_total") == 0
    # each outcome joined and learned (a re-read one, from a partition rebuilt after a commit
    # the outage refused, joins again: at least once), none given up on
    assert figures['apex_outcomes_total{joined="yes"}'] >= outcomes
    assert figures.get('apex_outcomes_total{joined="no"}', 0.0) == 0
    assert now_learned - learned >= outcomes


def total(figures: dict[str, float], name: str) -> float:
    """A counter's value summed over its labels."""
    return sum(v for k, v in figures.items() if k == name or k.startswith(name + "{"))


def restart(service: KafkaService, sig: signal.Signals) -> None:
    """The outage: the broker stopped with ``sig``, down a while, started on the same data."""
    kill(service, sig)
    time.sleep(DOWN_S)
    service.start()
