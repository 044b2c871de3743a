"""Kafka into the hub: every partition of the relayed topics, no consumer group, from the end;
and replays of recent history that stop exactly where a client's live stream starts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..client import kafka_consumer
from ..settings import Settings
from ..topics import TopicAdmin
from . import metrics
from .hub import Hub
from .protocol import CHANNELS, Batch, Channel, Routes, batch_of

log = logging.getLogger(__name__)


def reader(settings: Settings) -> AIOKafkaConsumer:
    """A consumer outside any group, for partitions it assigns itself; a fetch returns after
    at most 100 ms even with little to relay."""
    return kafka_consumer(settings, fetch_max_wait_ms=100)


class Relay:
    """Tails the relayed topics and publishes each fetched micro-batch to the hub."""

    def __init__(self, settings: Settings, hub: Hub) -> None:
        self.settings = settings
        self.hub = hub
        self.routes = Routes()
        self.by_topic = {settings.topic_name(c.topic): c for c in CHANNELS.values()}
        self.consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        consumer = self.consumer = reader(self.settings)
        await consumer.start()
        try:
            partitions = await self._partitions()
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                self.hub.advance(
                    self.by_topic[tp.topic].name, tp.partition, await consumer.position(tp)
                )
            self.ready.set()
            log.info("relaying %d partitions of %s", len(partitions), sorted(self.by_topic))
            pause = self.settings.bridge_coalesce_ms / 1e3
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                started = time.perf_counter()
                now_ms = time.time() * 1e3
                for tp, records in fetched.items():
                    channel = self.by_topic[tp.topic]
                    batch = batch_of(channel, records, self.routes)
                    self.hub.publish(batch)
                    self._observe(channel, batch, now_ms)
                    lag = consumer.highwater(tp)
                    if lag is not None:
                        metrics.KAFKA_LAG.labels(channel.name, tp.partition).set(
                            lag - records[-1].offset - 1
                        )
                # let a few ms of messages gather: one frame per client carries them all
                await asyncio.sleep(max(0.0, pause - (time.perf_counter() - started)))
        finally:
            await consumer.stop()

    def _observe(self, channel: Channel, batch: Batch, now_ms: float) -> None:
        metrics.RELAYED.labels(channel.name).inc(len(batch))
        if batch.invalid:
            metrics.INVALID.labels(channel.name).inc(batch.invalid)
            log.warning("%d invalid messages on %s not relayed", batch.invalid, channel.topic)
        if len(batch):
            metrics.RELAY_LAG.observe(max(0.0, now_ms - float(batch.stamps.min())) / 1e3)

    async def _partitions(self) -> list[TopicPartition]:
        """Every partition of the relayed topics, waiting for topics not created yet."""
        while True:
            async with TopicAdmin(self.settings) as admin:
                states = {s.broker_name: s for s in await admin.describe()}
            counts = {t: n for t in self.by_topic if (n := states[t].partitions) is not None}
            missing = [t for t in self.by_topic if t not in counts]
            if not missing:
                return [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
            log.warning("waiting for topics %s (apex-stream topics create)", missing)
            await asyncio.sleep(2)


async def replay(
    settings: Settings,
    channel: Channel,
    start: int | dict[int, int],
    until: dict[int, int],
    limit: int,
    routes: Routes,
) -> AsyncIterator[Batch]:
    """A channel's history from ``start`` (a timestamp in ms, or offsets per partition) up to
    ``until`` (the offsets where the live stream takes over), at most ``limit`` messages per
    partition (the most recent ones)."""
    topic = settings.topic_name(channel.topic)
    consumer = reader(settings)
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in until}
        consumer.assign(list(tps.values()))
        first = await consumer.beginning_offsets(list(tps.values()))
        if isinstance(start, dict):
            wanted = {p: start.get(p, until[p]) for p in tps}
        else:
            found = await consumer.offsets_for_times(dict.fromkeys(tps.values(), start))
            wanted = {
                p: until[p] if found[tp] is None else found[tp].offset for p, tp in tps.items()
            }
        pending = {}
        for p, tp in tps.items():
            offset = min(until[p], max(wanted[p], first[tp], until[p] - limit))
            if offset < until[p]:
                consumer.seek(tp, offset)
                pending[p] = tp
        while pending:
            fetched = await consumer.getmany(*pending.values(), timeout_ms=1000)
            for tp, records in fetched.items():
                end = until[tp.partition]
                records = [r for r in records if r.offset < end]
                if records:
                    yield batch_of(channel, records, routes)
                if await consumer.position(tp) >= end:
                    pending.pop(tp.partition, None)
                    consumer.pause(tp)
    finally:
        await consumer.stop()
