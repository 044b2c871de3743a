"""How far the sink has got: the log end offsets of its topics and its group's committed
offsets."""

from __future__ import annotations

from typing import Any

from aiokafka.structs import TopicPartition

from apex_stream.client import kafka_admin, kafka_consumer
from apex_stream.settings import Settings
from apex_stream.topics import load_specs

SINK_TOPICS = ("prices", "opportunities", "predictions", "outcomes")


class Offsets:
    """The log end offsets of the sink's topics and the sink group's committed offsets."""

    def __init__(self, settings: Settings) -> None:
        self.group = f"{settings.app_id}-sink"
        specs = load_specs(settings.topics_dir)
        self.partitions = [
            TopicPartition(settings.topic_name(t), p)
            for t in SINK_TOPICS
            for p in range(specs[t].partitions)
        ]
        self.admin = kafka_admin(settings)
        self.consumer = kafka_consumer(settings)

    async def __aenter__(self) -> Offsets:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def ends(self) -> dict[Any, int]:
        return await self.consumer.end_offsets(self.partitions)

    async def committed(self) -> dict[Any, int]:
        found = await self.admin.list_consumer_group_offsets(self.group)
        return {tp: found[tp].offset if tp in found else 0 for tp in self.partitions}
