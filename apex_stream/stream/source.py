"""The Kafka side of the batch data path: whole fetches of opportunities and outcomes in, one
produce batch per partition out, offsets committed only after the outputs are acknowledged.

Faust's per-event stream machinery costs ~100 µs of CPU per event before any work (measured:
~10k events/s for an agent doing nothing), so opportunities and outcomes bypass it. This
service lives inside the Faust app (started with it, stopped before its consumer leaves the
group) and follows the app's consumer group instead of forming its own:

- **Ownership.** Faust's assignor gives topics of equal partition count to workers by partition
  number. This worker holds partition ``p`` of opportunities and outcomes exactly when Faust
  made partition ``p`` of prices active here, so the scored state of ``p`` lives in one process.
  Offsets are stored under the consumer group ``<APEX_APP_ID>-batch``, which has no members.
- **Revocation** (Faust awaits its ``on_partitions_revoked`` receivers before the rebalance
  goes on): the fetch in progress finishes, every output is acknowledged, offsets are
  committed, and only then does the partition move.
- **Assignment** (``on_rebalance_complete``, after Faust recovered its tables): a partition
  this worker held until now, with no commit by anyone else since, keeps its state; any other
  is rebuilt from the predictions topic, whose records carry what each opportunity was scored
  with (predictions go to the partition their opportunity came from).
- **Commits**: at most every ``commit_interval_s``, the positions whose outputs are
  acknowledged; an outcomes partition never past its earliest outcome still waiting for its
  opportunity, so a restart re-reads it (at least once; the sink stores each event once).
- **Lag**: every few seconds, the records behind on the partitions held, per topic
  (``apex_consumer_lag``); :meth:`BatchSource.lag_reason` says when it keeps growing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types import AppT
from mode import Service

from ..app import Pipeline
from ..client import kafka_consumer, kafka_producer
from ..deadletter import dead_letter
from ..errors import TopicError
from ..events import Event, encode
from ..metrics import BATCH_SECONDS, CONSUMER_LAG
from ..settings import Settings
from ..topics import TopicAdmin
from .lag import LagHistory
from .process import Output, Process

log = logging.getLogger("apex_stream.stream")

#: Fetches whose outputs may wait for their acknowledgement before the next fetch waits.
MAX_IN_FLIGHT = 32
#: Longest a partition's history may take to read when its state is rebuilt.
HISTORY_TIMEOUT_S = 60


class BatchSource(Service):
    """Fetches, hands each fetch to :class:`Process`, sends its output and commits."""

    def __init__(self, pipeline: Pipeline, process: Process, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.process = process
        settings = pipeline.settings
        self.settings = settings
        name = settings.topic_name
        self.topics = (name("opportunities"), name("outcomes"))
        self.predictions_topic = name("predictions")
        self.owner_topic = name("prices")
        self.group = f"{settings.app_id}-batch"
        self.owned: set[int] = set()
        self._lock = asyncio.Lock()
        self._has_partitions = asyncio.Event()
        self._in_flight: deque[tuple[list[asyncio.Future[Any]], dict[TopicPartition, int]]]
        self._in_flight = deque()
        self._acked: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._committing: asyncio.Future[None] | None = None
        self._last_commit = self._last_expiry = 0.0
        self.lag = LagHistory(settings.health_lag_floor, settings.health_lag_window_s)
        self.consumer: AIOKafkaConsumer
        self.producer: AIOKafkaProducer

    # -- lifecycle ----------------------------------------------------------------------------

    async def on_start(self) -> None:
        settings = self.settings
        self.consumer = kafka_consumer(
            settings,
            group_id=self.group,
            from_beginning=True,
            # the broker answers a fetch once it holds 64 KiB or after batch_max_delay_ms: few
            # large fetches under load (each costs the broker and this worker per request)
            fetch_min_bytes=64 * 1024,
            fetch_max_wait_ms=int(max(settings.batch_max_delay_ms, 1)),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.producer = kafka_producer(settings, linger_ms=0, max_batch_size=1024 * 1024)
        await self.consumer.start()
        await self.producer.start()
        app = self.pipeline.app
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_rebalance_complete.connect(self._on_rebalance_complete)
        # started after the first rebalance; recovery is on faust's TableManager, not its interface
        if app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            await self._follow_assignment()

    async def on_stop(self) -> None:
        async with self._lock:
            try:
                await self._release()
            finally:
                await self.consumer.stop()
                await self.producer.stop()

    @Service.task
    async def _fetch_loop(self) -> None:
        settings = self.settings
        timeout_ms = int(settings.batch_max_delay_ms)
        while not self.should_stop:
            await self._has_partitions.wait()
            async with self._lock:
                if not self.owned:
                    continue
                fetch = await self.consumer.getmany(
                    timeout_ms=timeout_ms, max_records=settings.batch_max_size
                )
                try:
                    if fetch:
                        await self._handle(fetch)
                    await self._commit_acked()
                except KafkaError as exc:
                    # an output Kafka did not take (after the producer's own retries): stop
                    # with nothing past it committed, so a restart reprocesses it
                    log.critical("delivery failed, stopping the worker: %r", exc)
                    await self.pipeline.app.crash(exc)
                    return
                self._expire()
                await self._sample_lag()

    # -- one fetch ----------------------------------------------------------------------------

    async def _handle(self, fetch: dict[TopicPartition, list[Any]]) -> None:
        opportunities_topic, outcomes_topic = self.topics
        opportunities = [
            r for tp, rs in fetch.items() if tp.topic == opportunities_topic for r in rs
        ]
        outcomes = [r for tp, rs in fetch.items() if tp.topic == outcomes_topic for r in rs]
        started = time.perf_counter()
        try:
            output = self.process.run(opportunities, outcomes)
        except Exception as exc:  # no fetch may stop the stream
            log.exception(
                "a fetch of %d records failed; dead-lettering it",
                len(outcomes) + len(opportunities),
            )
            reason = f"processing failed: {type(exc).__name__}: {exc}"
            output = Output(events=[dead_letter(r, reason) for r in (*opportunities, *outcomes)])
        BATCH_SECONDS.observe([time.perf_counter() - started])
        futures = await self._send(output)
        self._in_flight.append((futures, {tp: rs[-1].offset + 1 for tp, rs in fetch.items()}))
        if len(self._in_flight) > MAX_IN_FLIGHT:
            await self._settle(len(self._in_flight) - MAX_IN_FLIGHT)

    async def _send(self, output: Output) -> list[asyncio.Future[Any]]:
        """Predictions as one batch per partition (to the opportunity's partition), the rest
        keyed as their topics declare."""
        producer = self.producer
        futures = []
        for partition, rows in output.predictions.items():
            batch = producer.create_batch()
            for key, value in rows:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full
                    futures.append(
                        await producer.send_batch(
                            batch, self.predictions_topic, partition=partition
                        )
                    )
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(
                await producer.send_batch(batch, self.predictions_topic, partition=partition)
            )
        name = self.settings.topic_name
        for event in output.events:
            futures.append(await producer.send(name(event.topic), encode(event), key=event.key()))
        if output.snapshot is not None:
            futures.append(await self._send_snapshot(output.snapshot))
        return futures

    async def publish(self, events: Iterable[Event]) -> None:
        """Send events that answer no input (alerts, metrics): not tied to any commit."""
        name = self.settings.topic_name
        for event in events:
            await self.producer.send(name(event.topic), encode(event), key=event.key())

    async def _send_snapshot(self, blob: bytes) -> asyncio.Future[Any]:
        """The online learner's state into the learner-state GlobalTable (its store here, its
        changelog for every worker and the next start)."""
        table = self.pipeline.learner_state
        key = self.settings.app_id.encode()
        table.data[key] = blob
        delivery: asyncio.Future[Any] = await self.producer.send(
            table.changelog_topic.get_topic_name(), blob, key=key, partition=0
        )
        return delivery

    async def _settle(self, fetches: int) -> None:
        """Wait for the outputs of the oldest ``fetches`` fetches; their positions become
        committable. A failed delivery raises: the worker stops uncommitted (at least once)."""
        for _ in range(fetches):
            futures, positions = self._in_flight.popleft()
            for future in futures:
                await future
            self._acked.update(positions)

    async def _commit_acked(self, force: bool = False) -> None:
        """Commit what is acknowledged: every commit_interval_s in the background (the fetch
        loop goes on meanwhile), or now and awaited with ``force``."""
        while self._in_flight and all(f.done() for f in self._in_flight[0][0]):
            await self._settle(1)
        if self._committing is not None:
            if not force and not self._committing.done():
                return
            await self._committing
            self._committing = None
        now = time.monotonic()
        if not force and now - self._last_commit < self.settings.commit_interval_s:
            return
        self._last_commit = now
        commit = self._commit(self._committable())
        if force:
            await commit
        else:
            self._committing = asyncio.ensure_future(commit)

    def _committable(self) -> dict[TopicPartition, int]:
        """Acknowledged positions not committed yet; an outcomes partition's no further than
        its earliest outcome still waiting for its opportunity."""
        _, outcomes_topic = self.topics
        offsets = {}
        for tp, offset in self._acked.items():
            if tp.topic == outcomes_topic:
                waiting = self.process.join(tp.partition).floor()
                offset = offset if waiting is None else min(offset, waiting)
            if self._committed.get(tp) != offset:
                offsets[tp] = offset
        return offsets

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # the next commit carries these offsets again
            log.warning("committing %d offsets failed (%r); retrying later", len(offsets), exc)
            return
        self._committed.update(offsets)

    async def _sample_lag(self) -> None:
        """Records behind per topic on the partitions held, when a sample is due."""
        now = time.monotonic()
        if not self.lag.due(now):
            return
        lags = dict.fromkeys(self.topics, 0)
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:  # no fetch of it answered yet: no sample until every one is
                return
            lags[tp.topic] += max(highwater - await self.consumer.position(tp), 0)
        for topic, records in lags.items():
            CONSUMER_LAG.labels(topic).set(records)
        self.lag.add(now, lags)

    def lag_reason(self) -> str | None:
        """Why this worker is falling behind (its consumer lag keeps growing), or None."""
        return self.lag.reason()

    def _expire(self) -> None:
        now = time.time()
        if now - self._last_expiry >= 1.0:
            self._last_expiry = now
            self.process.expire(now)

    # -- ownership ----------------------------------------------------------------------------

    async def _on_revoked(self, app: AppT, /, *args: Any, **kwargs: Any) -> None:
        """Before Faust's rebalance goes on: finish, flush, commit, stop fetching."""
        async with self._lock:
            await self._release()

    async def _release(self) -> None:
        """Acknowledge and commit everything fetched so far and stop fetching."""
        if not self.owned:
            return
        await self._settle(len(self._in_flight))
        await self._commit_acked(force=True)
        self._has_partitions.clear()
        self.consumer.assign([])
        self._acked.clear()
        self.lag.clear()
        for topic in self.topics:
            CONSUMER_LAG.labels(topic).set(0)
        log.info("released partitions %s", sorted(self.owned))
        self.owned = set()

    async def _on_rebalance_complete(self, app: AppT, /, *args: Any, **kwargs: Any) -> None:
        await self._follow_assignment()

    async def _follow_assignment(self) -> None:
        """Fetch the partitions Faust made active here, with their join state."""
        async with self._lock:
            owned = {
                tp.partition
                for tp in self.pipeline.app.assignor.assigned_actives()
                if tp.topic == self.owner_topic
            }
            if owned == self.owned:
                return
            await self._release()
            tps = [TopicPartition(t, p) for t in self.topics for p in sorted(owned)]
            committed = {tp: await self.consumer.committed(tp) for tp in tps}
            stale = {
                p
                for p in owned
                if p not in self.process.joins
                or any(
                    committed[TopicPartition(t, p)] != self._committed.get(TopicPartition(t, p))
                    for t in self.topics
                )
            }
            self.process.drop(set(self.process.joins) - owned)
            if stale:
                await self._rebuild(stale, committed)
            self.consumer.assign(tps)
            self._committed = {tp: o for tp, o in committed.items() if o is not None}
            self.owned = owned
            self._has_partitions.set()
            log.info("holding partitions %s (rebuilt %s)", sorted(owned), sorted(stale))

    async def _rebuild(
        self, partitions: set[int], committed: dict[TopicPartition, int | None]
    ) -> None:
        """Each partition's scored state from the predictions of the last features_ttl_s,
        less the opportunities whose outcome was consumed before the committed offset."""
        started = time.monotonic()
        _, outcomes_topic = self.topics
        since_ms = int((time.time() - self.settings.features_ttl_s) * 1000)
        predictions = [TopicPartition(self.predictions_topic, p) for p in partitions]
        outcomes = [TopicPartition(outcomes_topic, p) for p in partitions]
        history = await read_range(
            self.consumer, predictions, {tp: committed[tp] or 0 for tp in outcomes}, since_ms
        )
        restored = 0
        for p in partitions:
            consumed = {
                r.key.decode() for r in history.get(TopicPartition(outcomes_topic, p), []) if r.key
            }
            values = [
                r.value
                for r in history.get(TopicPartition(self.predictions_topic, p), [])
                if r.value
            ]
            restored += self.process.restore(p, values, consumed)
        log.info(
            "rebuilt the scored state of partitions %s from predictions: %d entries in %.1f s",
            sorted(partitions),
            restored,
            time.monotonic() - started,
        )


async def skip_backlog(settings: Settings) -> int:
    """Move the batch path's committed offsets of opportunities and outcomes to the ends of
    their partitions; returns the opportunities skipped. For a demo that starts afresh: an
    earlier run's unscored opportunities are stale. Refuses while a worker of the app runs."""
    names = ("opportunities", "outcomes")
    async with TopicAdmin(settings) as admin:
        counts = {s.spec.name: s.partitions or 0 for s in await admin.describe()}
        if await admin.group_members(settings.app_id):
            raise TopicError(
                f"a worker of {settings.app_id!r} is running (its consumer group has members): "
                "stop it before skipping the backlog"
            )
    tps = [TopicPartition(settings.topic_name(n), p) for n in names for p in range(counts[n])]
    consumer = kafka_consumer(settings, group_id=f"{settings.app_id}-batch")
    await consumer.start()
    try:
        consumer.assign(tps)  # aiokafka commits only for assigned partitions
        ends = await consumer.end_offsets(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
        await consumer.commit(ends)
    finally:
        await consumer.stop()
    opportunities = settings.topic_name(names[0])
    return sum(end - (committed[tp] or 0) for tp, end in ends.items() if tp.topic == opportunities)


async def read_range(
    reader: AIOKafkaConsumer,
    to_end: list[TopicPartition],
    ends: dict[TopicPartition, int],
    since_ms: int,
) -> dict[TopicPartition, list[Any]]:
    """The records of partitions from ``since_ms`` (record time) up to the end of ``to_end``'s
    and up to the offsets ``ends`` gives for the others, read by ``reader`` (whose assignment
    this replaces)."""
    found = await reader.offsets_for_times({tp: since_ms for tp in [*to_end, *ends]})
    starts = {tp: offset.offset for tp, offset in found.items() if offset is not None}
    ends = ends | await reader.end_offsets([tp for tp in to_end if tp in starts])
    starts = {tp: starts.get(tp, end) for tp, end in ends.items()}
    history: dict[TopicPartition, list[Any]] = {tp: [] for tp in ends}
    todo = {tp: end for tp, end in ends.items() if starts[tp] < end}
    reader.assign(list(todo))
    for tp in todo:
        reader.seek(tp, starts[tp])
    deadline = time.monotonic() + HISTORY_TIMEOUT_S
    while todo and time.monotonic() < deadline:
        fetch = await reader.getmany(*todo, timeout_ms=500, max_records=50_000)
        for tp, records in fetch.items():
            end = todo[tp]
            history[tp] += [r for r in records if r.offset < end]
            if records[-1].offset + 1 >= end:
                del todo[tp]
                reader.pause(tp)
    if todo:
        log.warning(
            "history of %s not read to its end within %d s", sorted(todo), HISTORY_TIMEOUT_S
        )
    return history
