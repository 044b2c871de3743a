"""The sink: every event topic into its table, in batches, exactly as many rows as messages.

A plain aiokafka consumer group (``<app_id>-sink``) with manual commits: a batch's offsets are
committed only after the database transaction that holds its rows, so a crash loses nothing,
and the tables' unique keys make the redelivery that follows a crash add nothing. When the
database is down or slow, the consumer pauses its partitions (memory stays at one batch),
retries with exponential backoff, says so in the log and on the alerts topic, and resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ..errors import InvalidEvent
from ..events import Alert, Event, Opportunity, Outcome, Prediction, PriceTick, decode, encode
from ..settings import Settings
from .rows import TABLES
from .writer import write

log = logging.getLogger("apex_stream.sink")
SINK_EVENTS: tuple[type[Event], ...] = (PriceTick, Opportunity, Prediction, Outcome)
BACKOFF_S = (0.5, 30.0)


class Sink:
    """Consumes the event topics and writes them to the database."""

    def __init__(self, settings: Settings, *, batch_records: int = 20_000) -> None:
        self.settings = settings
        self.engine: Engine = create_engine(settings.db_url, pool_pre_ping=True)
        self.batch_records = batch_records
        self.by_topic = {settings.topic_name(cls.topic): cls for cls in SINK_EVENTS}
        self.consumer = AIOKafkaConsumer(
            *self.by_topic,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=f"{settings.app_id}-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=batch_records,
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        self.written: dict[str, int] = defaultdict(int)
        self.invalid = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and write until ``stop`` is set; commits what was written."""
        await self.consumer.start()
        await self.producer.start()
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(
                    timeout_ms=200, max_records=self.batch_records
                )
                if batches:
                    await self._store(batches, stop)
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            self.engine.dispose()

    def _rows(self, batches: dict[Any, list[Any]]) -> dict[type[Event], list[tuple[Any, ...]]]:
        rows: dict[type[Event], list[tuple[Any, ...]]] = defaultdict(list)
        for tp, messages in batches.items():
            cls = self.by_topic[tp.topic]
            row = TABLES[cls].row
            for m in messages:
                try:
                    rows[cls].append(row(decode(m.value, cls), m.partition, m.offset))
                except InvalidEvent:
                    self.invalid += 1  # the worker dead-letters invalid input; not stored
        return rows

    async def _store(self, batches: dict[Any, list[Any]], stop: asyncio.Event) -> None:
        """Write a batch (retrying while the database is unavailable), then commit offsets."""
        rows = self._rows(batches)
        delay, paused, since = BACKOFF_S[0], False, time.monotonic()
        while True:
            try:
                for cls, batch in rows.items():
                    await asyncio.to_thread(write, self.engine, TABLES[cls], batch)
                break
            except (OperationalError, DBAPIError) as exc:
                if not paused:
                    self.consumer.pause(*self.consumer.assignment())
                    paused = True
                reason = str(exc).splitlines()[0]
                log.warning("database unavailable (%s); retrying in %.1fs", reason, delay)
                await self._alert(reason, time.monotonic() - since)
                # polling the paused consumer keeps it in its group during a long outage
                await self.consumer.getmany(timeout_ms=int(delay * 1000))
                if stop.is_set():
                    raise  # leave the batch uncommitted: it is redelivered next time
                delay = min(delay * 2, BACKOFF_S[1])
        for cls, batch in rows.items():
            self.written[TABLES[cls].name] += len(batch)
        await self.consumer.commit(
            {tp: messages[-1].offset + 1 for tp, messages in batches.items()}
        )
        if paused:
            self.consumer.resume(*self.consumer.assignment())
            log.warning("database back after %.1fs; sink resumed", time.monotonic() - since)

    async def _alert(self, reason: str, down_for: float) -> None:
        alert = Alert(
            alert_id=uuid.uuid4().hex,
            kind="sink-database",
            severity="critical",
            message=f"sink cannot write to the database: {reason}",
            data={"down_for_s": round(down_for, 1)},
            timestamp=time.time(),
        )
        try:
            await self.producer.send(
                self.settings.topic_name(alert.topic), encode(alert), key=alert.key()
            )
        except Exception:  # noqa: BLE001 - an alert must never stop the retry loop
            log.exception("could not publish the sink alert")
