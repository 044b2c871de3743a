"""The declared topics, 10,000 simulated opportunities and their price ticks through the real
broker, read back: every message validates and equals what was sent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter

import msgspec
import pytest
from aiokafka.admin import NewTopic

from apex_stream.client import EventProducer, kafka_admin, kafka_consumer, kafka_producer
from apex_stream.errors import InvalidEvent
from apex_stream.events import Event, Opportunity, PriceTick, decode, encode
from apex_stream.settings import Settings
from apex_stream.simulator import MarketSimulator
from apex_stream.topics import TopicAdmin


async def read_all(settings: Settings, topic: str, n: int, timeout: float = 120) -> list[bytes]:
    """Read ``n`` raw values from every partition of a topic, from the beginning."""
    consumer = kafka_consumer(settings, settings.topic_name(topic), from_beginning=True)
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while len(values) < n:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                values += [m.value for msgs in batches.values() for m in msgs]
    finally:
        await consumer.stop()
    return values


async def test_topics_create_is_idempotent_and_matches_the_files(settings: Settings) -> None:
    async with TopicAdmin(settings) as admin:
        created = await admin.create()
        assert sorted(created) == sorted(settings.topic_name(s) for s in admin.specs)
        assert await admin.create() == []
        states = await admin.describe()
    for state in states:
        assert state.exists and state.drift == []
        assert state.partitions == state.spec.partitions


async def test_drift_in_partitions_and_config_is_reported(settings: Settings) -> None:
    admin_client = kafka_admin(settings)
    await admin_client.start()
    await admin_client.create_topics(
        [
            NewTopic(
                settings.topic_name("opportunities"), 2, 1, topic_configs={"retention.ms": "1000"}
            )
        ]
    )
    await admin_client.close()
    async with TopicAdmin(settings) as admin:
        await admin.create()
        state = next(s for s in await admin.describe() if s.spec.name == "opportunities")
    assert state.drift == [
        "partitions 2 on broker, 6 declared",
        "retention.ms=1000 on broker, 259200000 declared",
    ]


async def test_ten_thousand_opportunities_and_their_prices_round_trip(settings: Settings) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()
    sent: dict[str, list[Event]] = {"opportunities": [], "prices": []}
    for step in MarketSimulator(seed=7).run(opportunities=10_000):
        sent["opportunities"] += step.opportunities
        sent["prices"] += step.prices
    assert len(sent["opportunities"]) == 10_000 and len(sent["prices"]) > 5_000
    async with EventProducer(settings) as producer:
        await producer.send_many([*sent["prices"], *sent["opportunities"]])

    for topic, cls in (("opportunities", Opportunity), ("prices", PriceTick)):
        received = await read_all(settings, topic, len(sent[topic]))
        decoded = [decode(value, cls) for value in received]  # raises on any invalid one
        assert len(decoded) == len(sent[topic])
        assert Counter(map(encode, decoded)) == Counter(map(encode, sent[topic]))


async def test_messages_are_keyed_and_partitioned_as_declared(settings: Settings) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()
    step = next(MarketSimulator(seed=3).run(opportunities=200, dt=5.0))
    async with EventProducer(settings) as producer:
        await producer.send_many(step.opportunities)
    consumer = kafka_consumer(settings, settings.topic_name("opportunities"), from_beginning=True)
    await consumer.start()
    partition_of: dict[bytes, int] = {}
    async with asyncio.timeout(60):
        while len(partition_of) < len(step.opportunities):
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for m in messages:
                    assert m.key == decode(m.value, Opportunity).opportunity_id.encode()
                    partition_of[m.key] = m.partition
    await consumer.stop()
    assert len(set(partition_of.values())) == 6  # spread over every declared partition


MALFORMED = {
    b"\x00\x01garbage": "not valid JSON",
    b'{"opportunity_id": 5}': "Expected `str`, got `int` - at `$.opportunity_id`",
    b'{"input_amount": NaN}': "not valid JSON",
}


async def test_malformed_messages_from_the_broker_are_rejected_with_reasons(
    settings: Settings,
) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()
    good = next(MarketSimulator(seed=1).run(opportunities=1)).opportunities[0]
    fields = msgspec.to_builtins(good)
    cases = dict(MALFORMED) | {
        msgspec.json.encode(
            fields | {"gas_estimate": -5.0}
        ): "`float` >= 0.0 - at `$.gas_estimate`",
        msgspec.json.encode(fields | {"profit_usd": "12"}): "Expected `float`, got `str`",
        msgspec.json.encode(
            {k: v for k, v in fields.items() if k != "tokens"}
        ): "missing required field `tokens`",
    }
    async with kafka_producer(settings) as producer:
        for payload in [*cases, encode(good)]:
            await producer.send_and_wait(settings.topic_name("opportunities"), payload, key=b"k")
    received = await read_all(settings, "opportunities", len(cases) + 1)
    reasons: dict[bytes, str] = {}
    valid = []
    for value in received:
        try:
            valid.append(decode(value, Opportunity))
        except InvalidEvent as exc:
            reasons[value] = exc.reason
    assert valid == [good]
    assert reasons.keys() == cases.keys()
    for payload, expected in cases.items():
        assert expected in reasons[payload], (payload, reasons[payload])


@pytest.mark.slow
def test_cli_produce_and_consume(settings: Settings) -> None:
    env = os.environ | {"APEX_TOPIC_PREFIX": settings.topic_prefix}
    cli = [sys.executable, "-m", "apex_stream.cli"]
    created = subprocess.run([*cli, "topics", "create"], env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stdout + created.stderr
    produced = subprocess.run(
        [*cli, "produce", "--rate", "0", "--count", "2000", "--seed", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert produced.returncode == 0, produced.stdout + produced.stderr
    assert "2,000 opportunities" in produced.stdout
    consumed = subprocess.run(
        [*cli, "consume", "opportunities", "--from-beginning", "--count", "2000"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert consumed.returncode == 0, consumed.stderr
    lines = consumed.stdout.splitlines()
    assert len(lines) == 2000
    ids = {decode(line, Opportunity).opportunity_id for line in lines}
    assert len(ids) == 2000
