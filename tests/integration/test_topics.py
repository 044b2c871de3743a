"""The declared topics on the real broker: created once as the files say, drift reported."""

from __future__ import annotations

from aiokafka.admin import NewTopic

from apex_stream.client import kafka_admin
from apex_stream.settings import Settings
from apex_stream.topics import TopicAdmin


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
