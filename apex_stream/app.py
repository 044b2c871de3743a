"""The Faust app of a worker and the state it shares.

A :class:`Pipeline` holds the one ``faust.App``, the prices topic its agent reads
(``features/agent.py``), its tables (market state, online-learner snapshots) and a producer
shortcut. Opportunities and outcomes do not pass Faust's per-event streams: the batch data path
(``stream/``) runs inside this app and follows its consumer group.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

import faust
from aiokafka.admin import NewTopic
from faust.types import RecordMetadata

from .deadletter import dead_letter
from .events import DeadLetter, Event, encode
from .metrics import DEAD_LETTERS
from .settings import Settings

log = logging.getLogger("apex_stream.worker")

#: Tables hold raw bytes under bytes keys (Faust picks the raw codec for ``bytes``);
#: apex-stream encodes the values itself.
RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes}


def create_app(settings: Settings) -> faust.App:
    """The worker's app: at-least-once, raw bytes in and out (apex-stream decodes itself)."""
    datadir = settings.home / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        autodiscover=False,
        topic_partitions=6,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=5000,
        stream_buffer_maxsize=16384,
        producer_linger_ms=1,
        producer_max_batch_size=262_144,
        producer_acks=-1,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        table_cleanup_interval=60.0,
        datadir=str(datadir),
        # a worker killed without leaving the group (kill -9, a lost host) holds its partitions
        # until this passes: 10 s instead of Faust's 60 s, so the others take over soon
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
    )


class Pipeline:
    """The app with the topics and tables its agents share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._sending: list[Awaitable[RecordMetadata]] = []
        self._in_flight: list[Awaitable[RecordMetadata]] = []

        def topic(name: str) -> faust.TopicT:
            return self.app.topic(
                settings.topic_name(name),
                key_serializer="raw",
                value_serializer="raw",
            )

        self.prices = topic("prices")
        # Market state of every token, written by the worker owning the token's prices
        # partition, read by every worker (Faust's advice for a GlobalTable shared by several
        # instances: one partition, recovery buffer 1).
        self.market = self.app.GlobalTable(
            f"{settings.topic_prefix}market-state",
            **RAW,
            partitions=1,
            recovery_buffer_size=1,
            use_partitioner=True,
        )
        self.learner_state = self.app.GlobalTable(
            f"{settings.topic_prefix}learner-state",
            **RAW,
            partitions=1,
            recovery_buffer_size=1,
            use_partitioner=True,
        )

    def internal_topics(self) -> list[NewTopic]:
        """Faust's own topics, as Faust would declare them: the tables' compacted changelogs
        and the leader assignor's topic.

        The worker creates them before Faust starts (:func:`apex_stream.worker.run`): Faust
        declares them itself but joins the group right after, and a global table's changelog
        not yet in the broker's metadata then fails the group assignment, leaving the worker
        running with no partitions.
        """
        conf = self.app.conf
        topics = [table.changelog_topic for table in self.app.tables.values()]
        # Faust has no public accessor: private to its LeaderAssignor, not on LeaderAssignorT
        topics.append(self.app._leader_assignor._leader_topic)  # type: ignore[attr-defined]
        return [
            NewTopic(
                name=topic.get_topic_name(),
                num_partitions=topic.partitions or conf.topic_partitions,
                replication_factor=topic.replicas or conf.topic_replication_factor,
                topic_configs=dict(topic.config or {})
                | ({"cleanup.policy": "compact"} if topic.compacting else {}),
            )
            for topic in topics
        ]

    async def send(self, events: Iterable[Event]) -> None:
        """Queue events to their topics (for the prices agent). Delivery is confirmed one batch
        later (:meth:`settle`), and Faust flushes the producer before it commits offsets, so an
        acknowledged input is never ahead of its output (at least once)."""
        producer = self.app.producer
        topic_name = self.settings.topic_name
        self._sending += [
            await producer.send(topic_name(e.topic), e.key(), encode(e), None, None, None)
            for e in events
        ]

    async def settle(self) -> None:
        """Await the deliveries queued before the current batch; a failure raises here."""
        previous, self._in_flight, self._sending = self._in_flight, self._sending, []
        for future in previous:
            await future

    async def guarded(self, messages: Sequence[Any], work: Awaitable[None]) -> None:
        """Run one batch's work; if it fails, dead-letter the batch with the error and go on,
        so no agent dies on bad input (and if even that fails, log every offset)."""
        try:
            await work
            await self.settle()
        except Exception as exc:  # the agent must survive any one batch
            log.exception("batch of %d failed; dead-lettering it", len(messages))
            reason = f"processing failed: {type(exc).__name__}: {exc}"
            try:
                await self.dead_letter([dead_letter(m, reason) for m in messages])
                await self.settle()  # what was in flight before
                await self.settle()  # these dead letters
            except Exception:  # noqa: BLE001 - then log every lost offset instead
                for m in messages:
                    log.error("lost %s[%d]@%d: %s", m.topic, m.partition, m.offset, reason)

    async def dead_letter(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            DEAD_LETTERS.labels(letter.source_topic).inc()
        await self.send(letters)
