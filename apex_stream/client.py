"""The public Python API: thin, typed async wrappers over aiokafka.

async with OpportunityProducer() as producer:
    await producer.send(opportunity)

async with PredictionConsumer(group_id="my-bot") as predictions:
    async for prediction in predictions:
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, Generic, Self, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from .errors import InvalidEvent
from .events import Event, Opportunity, Prediction, decode, encode
from .settings import Settings, get_settings

E = TypeVar("E", bound=Event)


class EventProducer:
    """Sends typed events to their topics, keyed as declared; waits for acks="all"."""

    def __init__(self, settings: Settings | None = None, **producer_config: Any) -> None:
        self.settings = settings or get_settings()
        config = {"linger_ms": 5, "max_batch_size": 262_144, "acks": "all"} | producer_config
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers, **config
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

    async def send(self, event: Opportunity) -> None:  # type: ignore[override]
        if not isinstance(event, Opportunity):
            raise TypeError(f"OpportunityProducer sends Opportunity, not {type(event).__name__}")
        await super().send(event)


class EventConsumer(Generic[E]):
    """Iterates over one topic's events, decoded and validated.

    With ``group_id=None`` it reads every partition without committing (a tail); with a group it
    joins that consumer group. Messages that fail validation are skipped and counted in
    ``invalid`` unless ``strict`` is set, which raises :class:`InvalidEvent` instead.
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
        self._consumer = AIOKafkaConsumer(
            self.settings.topic_name(event_type.topic),
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=group_id,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=group_id is not None,
            **consumer_config,
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
