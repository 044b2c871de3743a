"""A benchmark step's topics: created from the topic files, dropped afterwards."""

from __future__ import annotations

from apex_stream.client import kafka_admin
from apex_stream.settings import Settings
from apex_stream.topics import TopicAdmin


async def create_topics(settings: Settings) -> None:
    """Every declared topic under ``settings``' prefix."""
    async with TopicAdmin(settings) as admin:
        await admin.create()


async def drop_topics(settings: Settings) -> None:
    """Delete a step's topics (its own and its workers' changelogs): the broker stays lean."""
    admin = kafka_admin(settings)
    await admin.start()
    try:
        marker = settings.topic_prefix.rstrip(".")
        names = [t for t in await admin.list_topics() if marker in t]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()
