"""Live reload: manifest revisions go out on the ``model-control`` topic and every worker
switches to each newer one without a restart.

Whoever changes the registry (``apex-stream models ...``, the lifecycle controller) writes
models/manifest.json and publishes the whole new manifest with :func:`publish`. Each worker
reads the one-partition, compacted topic without a consumer group (every worker sees every
revision, starting with the last one published), loads the new versions off the event loop,
and swaps its ensemble between two micro-batches: every opportunity is scored exactly once,
by one revision, and its prediction records the versions that scored it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import TopicPartition

from ..client import EventProducer, kafka_consumer
from ..errors import InvalidEvent
from ..events import ModelControl, decode
from ..settings import Settings
from .registry import Manifest

log = logging.getLogger("apex_stream.inference")

TOPIC = ModelControl.topic
T = TypeVar("T")


async def publish(settings: Settings, manifest: Manifest, reason: str) -> None:
    """Send a manifest revision to every worker (acknowledged by all in-sync replicas)."""
    event = ModelControl(revision=manifest.revision, manifest=manifest.to_json(), reason=reason)
    async with EventProducer(settings) as producer:
        await producer.send(event)


async def follow(
    settings: Settings,
    revision: Callable[[], int],
    build: Callable[[Manifest], T],
    install: Callable[[T, str], None],
    refuse: Callable[[int, Exception], Awaitable[None]],
) -> None:
    """For the last published revision and every later one newer than ``revision()``:
    ``build(manifest)`` in a thread (loading models), then ``install(built, reason)`` on the
    event loop, or ``refuse(revision, error)`` when building failed (the current revision goes
    on serving). Runs until cancelled, retrying on errors."""
    tp = TopicPartition(settings.topic_name(TOPIC), 0)
    while True:
        consumer = kafka_consumer(settings)
        try:
            await consumer.start()
            while tp.topic not in await consumer.topics():
                await asyncio.sleep(2)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            consumer.seek(tp, max(end - 1, 0))  # the newest revision, then everything after
            async for message in consumer:
                try:
                    event = decode(message.value, ModelControl)
                except InvalidEvent as exc:
                    log.error("model-control offset %d ignored: %s", message.offset, exc)
                    continue
                if event.revision <= revision():
                    continue
                try:
                    built = await asyncio.to_thread(build, Manifest.from_json(event.manifest))
                except Exception as exc:  # noqa: BLE001 - keep serving the current revision
                    log.error("manifest revision %d refused: %s", event.revision, exc)
                    await refuse(event.revision, exc)
                else:
                    install(built, event.reason)
        except asyncio.CancelledError:
            raise
        except Exception:  # a broker hiccup must not end live reload
            log.exception("following %s failed; retrying in 5 s", tp.topic)
            await asyncio.sleep(5)
        finally:
            await consumer.stop()
