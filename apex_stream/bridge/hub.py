"""Subscribers and fan-out (no Kafka, no sockets).

Each micro-batch of a channel is filtered once per distinct filter, joined into chunks once,
and the same chunk objects are queued to every client of that filter. A client's queue is
bounded in messages: when it is full the *oldest* relayed messages are dropped (live market
data loses value with age) and counted; control messages are never dropped. A client's
writer drains everything pending into as few frames as the frame limit allows, so frames grow
by themselves when a client or the server falls behind.

A client that takes one event per frame (``event`` framing, seed 000's clients) is queued one
item per envelope instead, built once per batch and filter for all such clients; only they pay
for it (more items, one frame per event).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .protocol import CHANNELS, Batch, Filter, Framing


@dataclass(slots=True)
class Item:
    """A queued piece of a client's output: relayed envelopes (``count`` > 0, joined by
    commas, without brackets) or one control message (``count`` == 0). An ``event``-framed
    client's relayed items hold one envelope each."""

    payload: bytes
    count: int = 0


@dataclass(eq=False)
class Client:
    """One websocket subscriber: its filters, bounded queue and counters."""

    id: int
    limit: int
    framing: Framing = "array"
    subscriptions: dict[str, Filter] = field(default_factory=dict)
    items: deque[Item] = field(default_factory=deque)
    queued: int = 0
    delivered: int = 0
    dropped: int = 0
    held: dict[str, list[Item]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    connected_at: float = field(default_factory=time.time)

    def control(self, payload: bytes) -> None:
        self.items.append(Item(payload))
        self.wake.set()

    def offer(self, channel: str, chunks: list[Item], count: int) -> None:
        """Queue ``count`` relayed messages; held back while the channel's replay runs."""
        if channel in self.held:
            self.held[channel].extend(chunks)
        else:
            self.push(chunks, count)

    def push(self, chunks: list[Item], count: int) -> None:
        """Queue relayed messages now, shedding the oldest beyond the limit."""
        self.items.extend(chunks)
        self.queued += count
        if self.queued > self.limit:
            self._shed()
        self.wake.set()

    def _shed(self) -> None:
        kept: list[Item] = []
        while self.queued > self.limit and self.items:
            item = self.items.popleft()
            if item.count:
                self.queued -= item.count
                self.dropped += item.count
            else:
                kept.append(item)
        self.items.extendleft(reversed(kept))

    def frames(self, max_bytes: int) -> list[bytes]:
        """Everything pending as frames: runs of relayed chunks become JSON arrays of at most
        ``max_bytes`` (a single larger chunk goes alone), control messages go one per frame,
        and so does each envelope of an ``event``-framed client (a chunk of several, queued
        before it switched framing, still goes as an array)."""
        frames: list[bytes] = []
        run: list[bytes] = []
        size = 0
        alone_events = self.framing == "event"
        while self.items:
            item = self.items.popleft()
            self.queued -= item.count
            self.delivered += item.count
            if not item.count or (alone_events and item.count == 1):
                if run:
                    frames.append(_array(run))
                    run, size = [], 0
                frames.append(item.payload)
                continue
            if run and size + len(item.payload) > max_bytes:
                frames.append(_array(run))
                run, size = [], 0
            run.append(item.payload)
            size += len(item.payload) + 1
        if run:
            frames.append(_array(run))
        return frames


def _array(chunks: list[bytes]) -> bytes:
    return b"[" + b",".join(chunks) + b"]"


class Hub:
    """Clients grouped by (channel, filter), and the relay's position in every partition."""

    def __init__(self, client_queue: int, chunk_bytes: int) -> None:
        self.client_queue = client_queue
        self.chunk_bytes = chunk_bytes
        self.clients: dict[int, Client] = {}
        self.groups: dict[str, dict[tuple[Any, ...], tuple[Filter, set[Client]]]] = {
            name: {} for name in CHANNELS
        }
        self.positions: dict[str, dict[int, int]] = {name: {} for name in CHANNELS}
        self.relayed: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self.invalid = 0
        self._ids = itertools.count(1)
        self._gone = [0, 0]  # delivered and dropped of clients that left

    def connect(self, framing: Framing = "array") -> Client:
        client = Client(next(self._ids), self.client_queue, framing)
        self.clients[client.id] = client
        return client

    def disconnect(self, client: Client) -> None:
        self.unsubscribe(client, list(client.subscriptions))
        if self.clients.pop(client.id, None) is not None:
            self._gone[0] += client.delivered
            self._gone[1] += client.dropped

    def subscribe(self, client: Client, channel: str, flt: Filter, *, hold: bool = False) -> None:
        """(Re)subscribe; with ``hold`` live messages wait until :meth:`release` (a replay is
        filling the gap up to :attr:`positions` first)."""
        self.unsubscribe(client, [channel])
        client.subscriptions[channel] = flt
        self.groups[channel].setdefault(flt.key(), (flt, set()))[1].add(client)
        if hold:
            client.held[channel] = []

    def release(self, client: Client, channel: str, marker: bytes) -> None:
        """End a replay: the marker, then the live messages held meanwhile."""
        held = client.held.pop(channel, [])
        client.control(marker)
        if held:
            client.offer(channel, held, sum(c.count for c in held))

    def unsubscribe(self, client: Client, channels: list[str]) -> None:
        for channel in channels:
            flt = client.subscriptions.pop(channel, None)
            client.held.pop(channel, None)
            if flt is None:
                continue
            key = flt.key()
            members = self.groups[channel][key][1]
            members.discard(client)
            if not members:
                del self.groups[channel][key]

    def publish(self, batch: Batch) -> None:
        """Fan a channel's micro-batch out to every matching client."""
        self.invalid += batch.invalid
        if not len(batch):
            return
        positions = self.positions[batch.channel]
        for partition in np.unique(batch.partitions).tolist():
            positions[partition] = int(batch.offsets[batch.partitions == partition].max()) + 1
        self.relayed[batch.channel] += len(batch)
        for flt, members in self.groups[batch.channel].values():
            selected = batch.select(flt.mask(batch))
            if selected:
                forms: dict[Framing, list[Item]] = {}
                for client in members:
                    items = forms.get(client.framing)
                    if items is None:
                        items = forms[client.framing] = self.items(selected, client.framing)
                    client.offer(batch.channel, items, len(selected))

    def advance(self, channel: str, partition: int, offset: int) -> None:
        """The relay's next offset in a partition (set at start, before any message)."""
        self.positions[channel][partition] = offset

    def items(self, encoded: list[bytes], framing: Framing) -> list[Item]:
        """Envelopes as queue items for clients of that framing: chunks, or one per envelope."""
        if framing == "event":
            return [Item(e, 1) for e in encoded]
        return self.chunks(encoded)

    def chunks(self, encoded: list[bytes]) -> list[Item]:
        """Envelopes joined into chunks of about ``chunk_bytes`` (cut where the running size
        crosses a multiple of it)."""
        if not encoded:
            return []
        ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + 1)
        cuts = [0, *(np.flatnonzero(np.diff(ends // self.chunk_bytes)) + 1).tolist(), len(encoded)]
        return [Item(b",".join(encoded[a:b]), b - a) for a, b in itertools.pairwise(cuts)]

    @property
    def delivered(self) -> int:
        return self._gone[0] + sum(c.delivered for c in self.clients.values())

    @property
    def dropped(self) -> int:
        return self._gone[1] + sum(c.dropped for c in self.clients.values())
