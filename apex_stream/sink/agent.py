"""The sink: every event topic into its table, in batches, exactly as many rows as messages.

A plain aiokafka consumer group (``<app_id>-sink``) with manual commits: a batch's offsets are
committed only after the database transaction that holds its rows, so a crash loses nothing,
and the tables' unique keys make the redelivery that follows a crash add nothing. When the
database is down or slow, the consumer pauses its partitions (memory stays at two batches: the
one being written and the next, already encoded), retries with exponential backoff, says so in
the log and on the alerts topic, and resumes. Every ``metrics_every_s`` it publishes a
``sink`` message on the metrics topic (rows/s per table, backlog, dead letters, outage).

A message that cannot be stored goes to the dead-letter topic with its reason, and every other
row of its batch is written: an event the table's types cannot hold (a timestamp out of
range) or a row the database rejects (a NUL byte in a text). Opportunities and prices in
their input forms (``inputs.py``) are stored normalized, with the ids the worker derives;
invalid events are not stored: the worker dead-letters them.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field

import psycopg
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ..client import kafka_consumer, kafka_producer
from ..deadletter import dead_letter
from ..errors import InvalidEvent
from ..events import (
    Alert,
    DeadLetter,
    Event,
    Metric,
    Opportunity,
    Outcome,
    Prediction,
    PriceTick,
    encode,
)
from ..inputs import kafka_time, read
from ..settings import Settings
from .rows import TABLES
from .writer import write_rejecting

log = logging.getLogger("apex_stream.sink")
SINK_EVENTS: tuple[type[Event], ...] = (PriceTick, Opportunity, Prediction, Outcome)
BACKOFF_S = (0.5, 30.0)
#: errors of an unavailable database: SQLAlchemy's when connecting, psycopg's from a COPY
#: that loses its connection midway
DATABASE_ERRORS = (OperationalError, DBAPIError, psycopg.OperationalError)
#: what encoding raises for a valid event that a column cannot hold (an out-of-range number)
UNSTORABLE = (struct.error, OverflowError, ValueError)
#: per event class, the rows the database rejected: their index with its reason
Rejected = dict[type[Event], dict[int, str]]


@dataclass
class Batch:
    """One fetch, ready to write: each table's rows (binary COPY) with the messages they came
    from, the dead letters of events no row can hold, and the offsets to commit after."""

    offsets: dict[TopicPartition, int]
    rows: dict[type[Event], list[bytes]] = field(default_factory=lambda: defaultdict(list))
    sources: dict[type[Event], list[ConsumerRecord]] = field(
        default_factory=lambda: defaultdict(list)
    )
    dead: list[DeadLetter] = field(default_factory=list)


class Sink:
    """Consumes the event topics and writes them to the database."""

    def __init__(self, settings: Settings, *, batch_records: int = 20_000) -> None:
        self.settings = settings
        self.engine: Engine = create_engine(settings.db_url, pool_pre_ping=True)
        self.batch_records = batch_records
        self.by_topic = {settings.topic_name(cls.topic): cls for cls in SINK_EVENTS}
        self.consumer = kafka_consumer(
            settings,
            *self.by_topic,
            group_id=f"{settings.app_id}-sink",
            from_beginning=True,
            max_poll_records=batch_records,
        )
        self.producer = kafka_producer(settings, acks=1)  # the leader's acknowledgement only
        self.written: dict[str, int] = defaultdict(int)
        self.invalid = 0
        self.dead_lettered = 0
        #: the next offset to read of each partition, as last committed
        self.committed: dict[TopicPartition, int] = {}
        #: when the current database outage began (monotonic), if one is going on
        self.down_since: float | None = None
        #: messages past the committed offsets, as of the last metrics message
        self.backlog = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and write until ``stop`` is set; commits what was written.

        Double-buffered: while one batch is written (its tables in parallel, one connection
        each, in threads that wait on the database without the GIL), the next is fetched and
        encoded (in a thread, so the event loop keeps serving the consumer meanwhile). Batches
        are written and committed in order; at most two are held.
        """
        await self.consumer.start()
        await self.producer.start()
        reporter = asyncio.create_task(self._report())
        pending: tuple[Batch, asyncio.Task[Rejected]] | None = None
        try:
            while not stop.is_set():
                batch = await asyncio.to_thread(self._encode, await self._fetch())
                if pending is not None:
                    await self._finish(*pending, stop)
                    pending = None
                if batch.offsets:
                    pending = (batch, asyncio.create_task(self._write(batch)))
            if pending is not None:
                await self._finish(*pending, stop)
                pending = None
        finally:
            if pending is not None:  # an error: the batch stays uncommitted
                await asyncio.gather(pending[1], return_exceptions=True)
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            await self.consumer.stop()
            await self.producer.stop()
            self.engine.dispose()

    async def _fetch(self) -> dict[TopicPartition, list[ConsumerRecord]]:
        fetched: dict[TopicPartition, list[ConsumerRecord]] = await self.consumer.getmany(
            timeout_ms=200, max_records=self.batch_records
        )
        return fetched

    def _encode(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> Batch:
        """Each table's rows, encoded for binary COPY."""
        batch = Batch({tp: messages[-1].offset + 1 for tp, messages in fetched.items()})
        for tp, messages in fetched.items():
            cls = self.by_topic[tp.topic]
            encode, rows, sources = TABLES[cls].encode, batch.rows[cls], batch.sources[cls]
            for m in messages:
                try:
                    event = read(m.value, cls, kafka_time(m.timestamp))
                    rows.append(encode(event, tp.partition, m.offset))
                except InvalidEvent:
                    self.invalid += 1  # the worker dead-letters invalid input; not stored
                except UNSTORABLE as exc:
                    batch.dead.append(dead_letter(m, f"cannot be stored: {exc}"))
                else:
                    sources.append(m)
        return batch

    async def _write(self, batch: Batch) -> Rejected:
        """Write each table's rows in a thread of its own, leaving out the rows the database
        rejects; raises the first failure once all are done (a retry then rewrites every
        table: what was committed adds nothing)."""
        tables = [cls for cls, rows in batch.rows.items() if rows]
        results = await asyncio.gather(
            *(
                asyncio.to_thread(write_rejecting, self.engine, TABLES[cls], batch.rows[cls])
                for cls in tables
            ),
            return_exceptions=True,
        )
        rejected: Rejected = {}
        for cls, result in zip(tables, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            rejected[cls] = result
        return rejected

    async def _finish(
        self, batch: Batch, first_try: Awaitable[Rejected], stop: asyncio.Event
    ) -> None:
        """Await a batch's write (retrying while the database is unavailable), dead-letter
        what could not be stored, then commit its offsets."""
        delay, paused, since = BACKOFF_S[0], False, time.monotonic()
        attempt = first_try
        while True:
            try:
                rejected = await attempt
                break
            except DATABASE_ERRORS as exc:
                if not paused:
                    self.consumer.pause(*self.consumer.assignment())
                    paused, self.down_since = True, since
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("database unavailable (%s); retrying in %.1fs", reason, delay)
                await self._alert(reason, time.monotonic() - since)
                # polling the paused consumer keeps it in its group during a long outage
                await self.consumer.getmany(timeout_ms=int(delay * 1000))
                if stop.is_set():
                    raise  # leave the batch uncommitted: it is redelivered next time
                delay = min(delay * 2, BACKOFF_S[1])
                attempt = self._write(batch)
        dead = batch.dead + [
            dead_letter(batch.sources[cls][i], f"rejected by the database: {why}")
            for cls, reasons in rejected.items()
            for i, why in reasons.items()
        ]
        if dead:
            await self._dead_letter(dead)
        for cls, rows in batch.rows.items():
            self.written[TABLES[cls].name] += len(rows) - len(rejected.get(cls, ()))
        try:
            await self.consumer.commit(batch.offsets)
            self.committed |= batch.offsets
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced meanwhile: the partitions' next owner reads these messages
            # again from the last committed offsets, and their rows' keys make that add nothing
            log.warning("offsets not committed (%s); they are read again", exc)
        if paused:
            self.consumer.resume(*self.consumer.assignment())
            self.down_since = None
            log.warning("database back after %.1fs; sink resumed", time.monotonic() - since)

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        """Send dead letters and wait until the broker has them (before the commit)."""
        topic = self.settings.topic_name(DeadLetter.topic)
        sent = [await self.producer.send(topic, encode(d), key=d.key()) for d in letters]
        await asyncio.gather(*sent)
        self.dead_lettered += len(letters)
        log.warning(
            "%d messages not stored, dead-lettered (first: %s at %s[%d]@%d)",
            len(letters),
            letters[0].reason,
            letters[0].source_topic,
            letters[0].partition,
            letters[0].offset,
        )

    async def _report(self) -> None:
        """Publish the sink's figures every ``metrics_every_s``: rows written per second by
        table since the last message, messages behind the committed offsets (``backlog``, of
        the partitions that have committed), dead letters and invalid events so far, and for
        how long the database has been down (0 when it is up)."""
        every = self.settings.metrics_every_s
        last, before = time.monotonic(), dict(self.written)
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            values = {
                f"rows_per_s.{table}": (n - before.get(table, 0)) / (now - last)
                for table, n in self.written.items()
            }
            values |= {
                "dead_lettered": float(self.dead_lettered),
                "invalid": float(self.invalid),
                "database_down_s": self.down_for,
            }
            try:
                self.backlog = await self._backlog()
                values["backlog"] = float(self.backlog)
            except KafkaError as exc:
                log.warning("sink backlog unknown: %s", exc)
            last, before = now, dict(self.written)
            await self._publish(Metric(source="sink", values=values))

    @property
    def down_for(self) -> float:
        """Seconds the database has been unavailable; 0 while it is up."""
        return time.monotonic() - self.down_since if self.down_since is not None else 0.0

    async def _backlog(self) -> int:
        """Messages past the committed offsets, over the assigned partitions that committed
        (end offsets asked of the broker: paused partitions are not fetched in an outage)."""
        partitions = [tp for tp in self.consumer.assignment() if tp in self.committed]
        if not partitions:
            return 0
        ends = await self.consumer.end_offsets(partitions)
        return sum(max(0, ends[tp] - self.committed[tp]) for tp in partitions)

    async def _alert(self, reason: str, down_for: float) -> None:
        await self._publish(
            Alert(
                alert_id=uuid.uuid4().hex,
                kind="sink-database",
                severity="critical",
                message=f"sink cannot write to the database: {reason}",
                data={"down_for_s": round(down_for, 1)},
                timestamp=time.time(),
            )
        )

    async def _publish(self, event: Event) -> None:
        """Queue an alert or metrics message; a failure is logged, never raised (neither may
        stop the sink)."""
        try:
            await self.producer.send(
                self.settings.topic_name(event.topic), encode(event), key=event.key()
            )
        except Exception:  # reporting must never stop the sink
            log.exception("could not publish %s", type(event).__name__)
