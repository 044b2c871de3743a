"""Smoke-test a Kafka broker with the client paths apex-stream uses (aiokafka admin, idempotent
create, describe configs, acks=all produce, consumer group with commit).

    python scripts/broker_smoke.py 127.0.0.1:19092

Used to choose the pinned broker version (README, "Why Apache Kafka 3.9.1").
"""

import asyncio
import sys
import uuid

from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from apex_stream.client import kafka_admin, kafka_consumer, kafka_producer
from apex_stream.settings import Settings


async def main(bootstrap: str, n: int = 1000) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    admin = kafka_admin(settings)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": "600000"})])
    again = await admin.create_topics([NewTopic(topic, 3, 1)])
    assert again.topic_errors[0][1] == 36, again  # TOPIC_ALREADY_EXISTS
    configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    assert ("retention.ms", "600000") in [e[:2] for e in configs[0].resources[0][4]]
    described = await admin.describe_topics([topic])
    assert len(described[0]["partitions"]) == 3
    producer = kafka_producer(settings)
    await producer.start()
    for i in range(n):
        await producer.send(topic, b"%d" % i, key=b"%d" % i)
    await producer.stop()
    consumer = kafka_consumer(settings, topic, group_id=topic, from_beginning=True)
    await consumer.start()
    seen = set()
    async with asyncio.timeout(60):
        async for message in consumer:
            seen.add(message.value)
            if len(seen) == n:
                break
    await consumer.commit()
    committed = [await consumer.committed(tp) for tp in consumer.assignment()]
    await consumer.stop()
    await admin.delete_topics([topic])
    await admin.close()
    assert sum(committed) == n, committed
    print(f"{bootstrap}: admin, produce, group consume and commit of {n} messages: ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
