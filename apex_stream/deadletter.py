"""The dead-letter path: what cannot be decoded or processed is kept with where it came from
and why, and the stream goes on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar

from .events import DeadLetter, Event, decode_batch

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
    messages: Sequence[Any], cls: type[E]
) -> tuple[list[E], list[Any], list[DeadLetter]]:
    """Decode a batch (:func:`decode_batch`): the valid events with their messages, and a
    DeadLetter per invalid one."""
    batch = decode_batch([m.value for m in messages], cls)
    kept = [messages[i] for i in batch.index]
    return batch.events, kept, [dead_letter(messages[i], reason) for i, reason in batch.rejected]
