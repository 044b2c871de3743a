"""The sink: every event topic into its table, in batches, exactly as many rows as messages.

A plain aiokafka consumer group (``<app_id>-sink``) with manual commits: a batch's offsets are
committed only after the database transaction that holds its rows, so a crash loses nothing,
and the tables' unique keys make the redelivery that follows a crash add nothing. When the
database is down or slow, the consumer pauses its partitions (memory stays at two batches: the
one being written and the next, already encoded), retries with exponential backoff, says so in
the log and on the alerts topic, and resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, IllegalStateError
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
#: errors of an unavailable database: SQLAlchemy's when connecting, psycopg's from a COPY
#: that loses its connection midway
DATABASE_ERRORS = (OperationalError, DBAPIError, psycopg.OperationalError)
#: each event class's rows in binary COPY form
Rows = dict[type[Event], list[bytes]]


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
        """Consume and write until ``stop`` is set; commits what was written.

        Double-buffered: while one batch is written (its tables in parallel, one connection
        each, in threads that wait on the database without the GIL), the next is fetched and
        encoded (in a thread, so the event loop keeps serving the consumer meanwhile). Batches
        are written and committed in order; at most two are held.
        """
        await self.consumer.start()
        await self.producer.start()
        pending: tuple[dict[Any, int], Rows, asyncio.Task[None]] | None = None
        try:
            while not stop.is_set():
                batches = await self._fetch()
                offsets = {tp: messages[-1].offset + 1 for tp, messages in batches.items()}
                rows = await asyncio.to_thread(self._rows, batches)
                del batches  # the messages are not kept while the batch is written
                if pending is not None:
                    await self._finish(*pending, stop)
                    pending = None
                if offsets:
                    pending = (offsets, rows, asyncio.create_task(self._write(rows)))
            if pending is not None:
                await self._finish(*pending, stop)
                pending = None
        finally:
            if pending is not None:  # an error: the batch stays uncommitted
                await asyncio.gather(pending[2], return_exceptions=True)
            await self.consumer.stop()
            await self.producer.stop()
            self.engine.dispose()

    async def _fetch(self) -> dict[Any, list[Any]]:
        return await self.consumer.getmany(timeout_ms=200, max_records=self.batch_records)

    def _rows(self, batches: dict[Any, list[Any]]) -> Rows:
        """Each table's rows, encoded for binary COPY."""
        rows: Rows = defaultdict(list)
        for tp, messages in batches.items():
            cls = self.by_topic[tp.topic]
            encode, out, partition = TABLES[cls].encode, rows[cls], tp.partition
            for m in messages:
                try:
                    out.append(encode(decode(m.value, cls), partition, m.offset))
                except InvalidEvent:
                    self.invalid += 1  # the worker dead-letters invalid input; not stored
        return rows

    async def _write(self, rows: Rows) -> None:
        """Write each table's rows in a thread of its own; raises the first failure once all
        are done (a retry then rewrites every table: what was committed adds nothing)."""
        results = await asyncio.gather(
            *(
                asyncio.to_thread(write, self.engine, TABLES[cls], batch)
                for cls, batch in rows.items()
                if batch
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _finish(
        self,
        offsets: dict[Any, int],
        rows: Rows,
        first_try: asyncio.Task[None],
        stop: asyncio.Event,
    ) -> None:
        """Await a batch's write (retrying while the database is unavailable), then commit
        its offsets."""
        delay, paused, since = BACKOFF_S[0], False, time.monotonic()
        attempt: Awaitable[None] = first_try
        while True:
            try:
                await attempt
                break
            except DATABASE_ERRORS as exc:
                if not paused:
                    self.consumer.pause(*self.consumer.assignment())
                    paused = True
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("database unavailable (%s); retrying in %.1fs", reason, delay)
                await self._alert(reason, time.monotonic() - since)
                # polling the paused consumer keeps it in its group during a long outage
                await self.consumer.getmany(timeout_ms=int(delay * 1000))
                if stop.is_set():
                    raise  # leave the batch uncommitted: it is redelivered next time
                delay = min(delay * 2, BACKOFF_S[1])
                attempt = self._write(rows)
        for cls, batch in rows.items():
            self.written[TABLES[cls].name] += len(batch)
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced meanwhile: the partitions' next owner reads these messages
            # again from the last committed offsets, and their rows' keys make that add nothing
            log.warning("offsets not committed (%s); they are read again", exc)
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
