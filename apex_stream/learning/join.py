"""The outcome join: each outcome meets the features its opportunity was scored with, once.

Opportunities and outcomes are co-partitioned (same key, same partition count), so the join
runs per partition, and a partition's state moves with the partition (:class:`PartitionJoin`):

- **scored**: every scored opportunity's features, member scores, versions and prediction
  latency, in a ring of fixed capacity, oldest first, with a dict from opportunity id to its
  position. A joined entry leaves the dict; expiry cuts the ring's oldest end by time, so it
  costs what it expires, and a full ring evicts its oldest entries (counted).
- **pending**: an outcome that arrives before its opportunity waits in a dict keyed by
  opportunity id and is matched when that opportunity is scored, never re-scanned; a deque in
  arrival order expires it after ``outcome_wait_s``. The earliest pending outcome's offset is
  how far the outcomes partition may be committed (:meth:`PartitionJoin.floor`), so a restart
  re-reads every outcome still waiting.

Pure: no Kafka, no clocks of its own (callers pass ``now``); unit-tested without a broker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np


@dataclass(frozen=True)
class Scored:
    """A batch of scored opportunities, as the join keeps them."""

    ids: Sequence[str]
    X: np.ndarray  # (n, features) float32
    scores: np.ndarray  # (n, members) float64, NaN where a member did not score
    versions: np.ndarray  # (n, members) object: the version that scored each row
    latency_ms: np.ndarray  # (n,) of each prediction
    at: np.ndarray  # (n,) Unix time each was scored


@dataclass(frozen=True)
class Joined:
    """Outcomes matched with their opportunities' scored state, row by row."""

    ids: list[str]
    X: np.ndarray
    scores: np.ndarray
    versions: np.ndarray
    latency_ms: np.ndarray
    success: np.ndarray  # bool
    profit: np.ndarray  # realized profit (USD)

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def concat(parts: Sequence[Joined], features: int, members: int) -> Joined:
        parts = [p for p in parts if len(p)]
        if not parts:
            return _empty(features, members)
        if len(parts) == 1:
            return parts[0]
        return Joined(
            [i for p in parts for i in p.ids],
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _ARRAYS),
        )


_ARRAYS = ("X", "scores", "versions", "latency_ms", "success", "profit")


def _empty(features: int, members: int) -> Joined:
    return Joined(
        [],
        np.empty((0, features), np.float32),
        np.empty((0, members)),
        np.empty((0, members), object),
        np.empty(0),
        np.empty(0, bool),
        np.empty(0),
    )


class PartitionJoin:
    """The join state of one partition."""

    def __init__(self, capacity: int, features: int, members: int) -> None:
        self.capacity = capacity
        self.features, self.members = features, members
        self.X = np.zeros((capacity, features), np.float32)
        self.scores = np.zeros((capacity, members))
        self.versions = np.empty((capacity, members), object)
        self.latency_ms = np.zeros(capacity)
        self.at = np.zeros(capacity)
        self.ids = np.empty(capacity, object)
        self.index: dict[str, int] = {}  # opportunity id -> position (slot = position % capacity)
        self.head = self.tail = 0  # positions: next to write, oldest kept
        self.pending: dict[str, tuple[bool, float, int]] = {}  # id -> success, profit, offset
        self.arrivals: deque[tuple[float, str, int]] = deque()  # (arrived, id, offset)
        self.evicted = 0  # entries pushed out of the full ring before their time (a counter)

    def __len__(self) -> int:
        """Scored entries still waiting for their outcome."""
        return len(self.index)

    # -- scored opportunities -----------------------------------------------------------------

    def scored(self, batch: Scored) -> Joined:
        """Keep a scored batch; returns the pending outcomes it completes."""
        n = len(batch.ids)
        if n > self.capacity:  # keep the newest; the rest are evicted at once
            self.evicted += n - self.capacity
            batch = Scored(
                batch.ids[-self.capacity :],
                *(getattr(batch, f)[-self.capacity :] for f in _SCORED_ARRAYS),
            )
            n = self.capacity
        if self.head + n - self.tail > self.capacity:
            self.evicted += self._drop(self.head + n - self.capacity)
        slots = np.arange(self.head, self.head + n) % self.capacity
        self.X[slots] = batch.X
        self.scores[slots] = batch.scores
        self.versions[slots] = batch.versions
        self.latency_ms[slots] = batch.latency_ms
        self.at[slots] = batch.at
        self.ids[slots] = batch.ids
        self.index.update(zip(batch.ids, range(self.head, self.head + n), strict=True))
        self.head += n
        if not self.pending:
            return _empty(self.features, self.members)
        waiting = [i for i in batch.ids if i in self.pending]
        if not waiting:
            return _empty(self.features, self.members)
        success, profit, _ = zip(*map(self.pending.pop, waiting), strict=True)
        return self._take(waiting, list(success), list(profit))

    def expire(self, horizon: float) -> int:
        """Drop scored entries older than ``horizon`` (Unix time); returns how many were live."""
        if self.head == self.tail:
            return 0
        positions = np.arange(self.tail, self.head)
        cut = self.tail + int(np.searchsorted(self.at[positions % self.capacity], horizon))
        return self._drop(cut)

    def _drop(self, until: int) -> int:
        """Forget positions before ``until``; returns how many of them were still waiting."""
        slots = np.arange(self.tail, until) % self.capacity
        keys = self.ids[slots]
        dropped = 0
        # not joined yet; numpy's stubs reject None, an operand of object arrays like any other
        for j in np.flatnonzero(np.not_equal(keys, None)).tolist():  # type: ignore[call-overload]
            if self.index.get(keys[j]) == self.tail + j:  # not scored again since
                del self.index[keys[j]]
                dropped += 1
        self.ids[slots] = None
        self.tail = until
        return dropped

    # -- outcomes -----------------------------------------------------------------------------

    def outcomes(
        self,
        ids: Sequence[str],
        success: np.ndarray,
        profit: np.ndarray,
        offsets: np.ndarray,
        now: float,
    ) -> Joined:
        """Join outcomes whose opportunity was scored; the others wait (:meth:`floor`)."""
        found = np.fromiter(map(self.index.__contains__, ids), bool, len(ids))
        if not found.all():
            missing = np.flatnonzero(~found)
            keys = [ids[i] for i in missing.tolist()]
            at = offsets[missing].tolist()
            waiting = zip(success[missing].tolist(), profit[missing].tolist(), at, strict=True)
            self.pending.update(zip(keys, waiting, strict=True))
            self.arrivals.extend(zip(repeat(now), keys, at))
        hits = np.flatnonzero(found)
        return self._take(
            [ids[i] for i in hits.tolist()], success[hits].tolist(), profit[hits].tolist()
        )

    def expire_outcomes(self, horizon: float) -> int:
        """Give up on outcomes that arrived before ``horizon`` without their opportunity."""
        expired = 0
        arrivals, pending = self.arrivals, self.pending
        while arrivals and arrivals[0][0] < horizon:
            _, key, offset = arrivals.popleft()
            if key in pending and pending[key][2] == offset:
                del pending[key]
                expired += 1
        return expired

    def floor(self) -> int | None:
        """Offset of the earliest outcome still waiting for its opportunity, if any."""
        arrivals, pending = self.arrivals, self.pending
        while arrivals:
            _, key, offset = arrivals[0]
            if key in pending and pending[key][2] == offset:
                return offset
            arrivals.popleft()
        return None

    def _take(self, keys: list[str], success: list[bool], profit: list[float]) -> Joined:
        """Remove these ids from the scored entries and pair them with their outcomes."""
        if not keys:
            return _empty(self.features, self.members)
        positions = np.fromiter(map(self.index.pop, keys), np.int64, len(keys))
        slots = positions % self.capacity
        self.ids[slots] = None
        return Joined(
            keys,
            self.X[slots],
            self.scores[slots],
            self.versions[slots],
            self.latency_ms[slots],
            np.array(success, bool),
            np.array(profit, np.float64),
        )


_SCORED_ARRAYS = ("X", "scores", "versions", "latency_ms", "at")
