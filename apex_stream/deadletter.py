"""The dead-letter path: what cannot be decoded or processed is kept with where it came from
and why, and the stream goes on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar

from .events import DeadLetter, Event
from .inputs import kafka_time, read_batch

E = TypeVar("E", bound=Event)


def dead_letter(message: Any, reason: str) -> DeadLetter:
    """A DeadLetter for a consumed message (anything with topic, partition, offset, key, value)."""
    key = message.key
    return DeadLetter(
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        source_key=key.decode(errors="backslashreplace") if isinstance(key, bytes) else key,
        payload=(message.value or b"").decode(errors="backslashreplace"),
        reason=reason,
        timestamp=time.time(),
    )


def split_valid(
    messages: Sequence[Any], cls: type[E], *, timestamps_ms: bool = True
) -> tuple[list[E], list[Any], list[DeadLetter]]:
    """Decode a batch (:func:`~apex_stream.inputs.read_batch`: canonical events, then input
    forms): the valid events with their messages, and a DeadLetter per invalid one.

    A message's record time stands in for an input form's missing timestamp: its ``timestamp``
    counts milliseconds (aiokafka's records) or, with ``timestamps_ms=False``, seconds (Faust's
    messages, which divide by 1000.0 as :func:`~apex_stream.inputs.kafka_time` does).
    """

    def record_time(i: int) -> float | None:
        stamp = messages[i].timestamp
        if timestamps_ms:
            return kafka_time(stamp)
        return stamp if stamp is not None and stamp > 0 else None

    batch = read_batch([m.value for m in messages], cls, record_time)
    kept = [messages[i] for i in batch.index]
    return batch.events, kept, [dead_letter(messages[i], reason) for i, reason in batch.rejected]
