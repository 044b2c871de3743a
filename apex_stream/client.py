"""Every Kafka client apex-stream makes, built from :class:`Settings` with the defaults below.

For events, the typed API (also the public one):

async with OpportunityProducer() as producer:
    await producer.send(opportunity)

async with PredictionConsumer(group_id="my-bot") as predictions:
    async for prediction in predictions:
        ...

For raw bytes, or partitions assigned, seeked and committed by hand: :func:`kafka_producer`,
:func:`kafka_consumer` and :func:`kafka_admin`, plain aiokafka clients on the configured brokers
with the same defaults (``async with kafka_consumer(...) as consumer`` starts and stops one).
These drive theirs by hand, in ways the typed API would hide:

- stream/source.py ``BatchSource``: follows Faust's group, commits once its outputs are acked.
- stream/source.py ``skip_backlog``, ``read_range``: commit or read chosen partitions' offsets.
- sink/agent.py ``Sink``: pauses in a database outage, commits after its rows' transaction.
- bridge/relay.py: assigns every partition itself, seeks to the end or to a replay's start.
- inference/control.py ``follow``: assigns the one partition, seeks to the newest revision.

Not built here:

- bench/traffic.py: librdkafka (confluent-kafka) on purpose, the client most scanners use,
  sending and timing from threads of its own (bootstrap servers from the same settings).
- services/kafka.py ``broker_answers``: probes an address, with a short timeout, for
  ``apex-stream up`` before anything else connects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, Generic, Self, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from .errors import InvalidEvent
from .events import Event, Opportunity, Prediction, decode, encode
from .settings import Settings, get_settings

E = TypeVar("E", bound=Event)

#: Every producer's starting point. ``acks="all"``: a send counts as done only once every
#: in-sync replica has it, so an output acknowledged before a commit survives a broker failover.
PRODUCER_DEFAULTS: dict[str, Any] = {"acks": "all"}
#: :class:`EventProducer` on top: events come in bulk (a market, a backlog), so 5 ms of lingering
#: fills batches of up to 256 KiB, few requests per second of events.
EVENT_PRODUCER_DEFAULTS: dict[str, Any] = {"linger_ms": 5, "max_batch_size": 262_144}
#: Every consumer's starting point. No auto-commit: a group's offsets move only when its owner
#: commits them, after what it made of the messages is safe (without a group, nothing commits).
CONSUMER_DEFAULTS: dict[str, Any] = {"enable_auto_commit": False}


def kafka_producer(settings: Settings, **config: Any) -> AIOKafkaProducer:
    """An aiokafka producer on the configured brokers, :data:`PRODUCER_DEFAULTS` under
    ``config``."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, **(PRODUCER_DEFAULTS | config)
    )


def kafka_consumer(
    settings: Settings,
    *topics: str,
    group_id: str | None = None,
    from_beginning: bool = False,
    **config: Any,
) -> AIOKafkaConsumer:
    """An aiokafka consumer on the configured brokers, :data:`CONSUMER_DEFAULTS` under
    ``config``; subscribed to ``topics`` (broker names, :meth:`Settings.topic_name`) if any.

    Without a group it reads every partition of its topics (or what it assigns itself). A
    partition without a committed offset (every one, without a group) starts at the oldest
    retained message with ``from_beginning``, otherwise at the end.
    """
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **(CONSUMER_DEFAULTS | config),
    )


def kafka_admin(settings: Settings, **config: Any) -> AIOKafkaAdminClient:
    """An aiokafka admin client on the configured brokers (``start()`` it, ``close()`` it)."""
    return AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **config)


class EventProducer:
    """Sends typed events to their topics, keyed as declared; waits for acks="all"."""

    def __init__(self, settings: Settings | None = None, **producer_config: Any) -> None:
        self.settings = settings or get_settings()
        self._producer = kafka_producer(
            self.settings, **(EVENT_PRODUCER_DEFAULTS | producer_config)
        )
        self._pending: list[asyncio.Future[Any]] = []

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    async def send(self, event: Event) -> None:
        """Queue one event; delivery is confirmed by :meth:`flush` (or on exit)."""
        future = await self._producer.send(
            self.settings.topic_name(event.topic), encode(event), key=event.key()
        )
        self._pending.append(future)
        if len(self._pending) >= 10_000:
            await self.flush()

    async def send_many(self, events: Iterable[Event]) -> None:
        """Queue many events."""
        for event in events:
            await self.send(event)

    async def flush(self) -> None:
        """Wait until every queued event is acknowledged by the broker; raises on failure."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


class OpportunityProducer(EventProducer):
    """Sends opportunities to the opportunities topic."""

    async def send(self, event: Event) -> None:
        if not isinstance(event, Opportunity):
            raise TypeError(f"OpportunityProducer sends Opportunity, not {type(event).__name__}")
        await super().send(event)


class EventConsumer(Generic[E]):
    """Iterates over one topic's events, decoded and validated.

    With ``group_id=None`` it reads every partition without committing (a tail); with a group it
    joins that consumer group and commits automatically. Messages that fail validation are
    skipped and counted in ``invalid`` unless ``strict`` is set, which raises
    :class:`InvalidEvent` instead.
    """

    def __init__(
        self,
        event_type: type[E],
        *,
        group_id: str | None = None,
        from_beginning: bool = False,
        strict: bool = False,
        settings: Settings | None = None,
        **consumer_config: Any,
    ) -> None:
        self.settings = settings or get_settings()
        self.event_type = event_type
        self.strict = strict
        self.invalid = 0
        self._consumer = kafka_consumer(
            self.settings,
            self.settings.topic_name(event_type.topic),
            group_id=group_id,
            from_beginning=from_beginning,
            **({"enable_auto_commit": group_id is not None} | consumer_config),
        )

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def __aiter__(self) -> AsyncIterator[E]:
        async for message in self._consumer:
            try:
                yield decode(message.value, self.event_type)
            except InvalidEvent:
                if self.strict:
                    raise
                self.invalid += 1


class PredictionConsumer(EventConsumer[Prediction]):
    """Iterates over the predictions topic."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Prediction, **kwargs)
