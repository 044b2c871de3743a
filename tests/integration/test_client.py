"""10,000 simulated opportunities and their price ticks through the real broker with the
client layer, read back: every message validates and equals what was sent, keyed and
partitioned as declared; malformed messages are rejected with reasons."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec

from apex_stream.client import EventProducer, kafka_consumer, kafka_producer
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
