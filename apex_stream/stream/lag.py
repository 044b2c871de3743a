"""How far the batch path's consumer is behind, and whether it keeps falling further behind.

A lag of any size is fine while it shrinks (a worker catching up after a restart) or holds
(a steady backlog); a worker that cannot keep up shows as a lag that grows sample after sample.
:func:`growing` is that rule, a pure function of the samples; :class:`LagHistory` keeps the
samples of each topic for it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

#: Seconds between two lag samples of a topic.
SAMPLE_EVERY_S = 5.0
#: Fewest consecutive rises before a lag counts as growing, however long they span.
MIN_SAMPLES = 4
#: No sample for this long while partitions are held: the fetch loop is stuck.
STALL_S = 6 * SAMPLE_EVERY_S
#: Samples kept per topic (20 minutes at one per SAMPLE_EVERY_S).
KEPT = 240


class LagSample(NamedTuple):
    """Records behind (highwater minus position, summed over the partitions held) at a time."""

    at: float
    records: int


class Rise(NamedTuple):
    """A lag that went from ``first`` to ``last`` records in ``seconds``."""

    first: int
    last: int
    seconds: float


def growing(samples: Sequence[LagSample], floor: int, window_s: float) -> Rise | None:
    """The rise that ends with the newest sample, when the lag is growing: each of its samples
    strictly above the one before, at least MIN_SAMPLES of them spanning at least ``window_s``,
    the last at or above ``floor``; else None (a lag that shrinks or holds, even once, or is
    small)."""
    if not samples:
        return None
    start = len(samples) - 1
    while start > 0 and samples[start - 1].records < samples[start].records:
        start -= 1
    first, last = samples[start], samples[-1]
    seconds = last.at - first.at
    if len(samples) - start < MIN_SAMPLES or seconds < window_s or last.records < floor:
        return None
    return Rise(first.records, last.records, seconds)


def reason(topic: str, samples: Sequence[LagSample], floor: int, window_s: float) -> str | None:
    """A line for /health when ``topic``'s lag is growing (:func:`growing`), else None."""
    rise = growing(samples, floor, window_s)
    if rise is None:
        return None
    return (
        f"consumer lag grew from {rise.first:,} to {rise.last:,} records over "
        f"{rise.seconds:.0f} s on {topic}"
    )


class LagHistory:
    """The lag samples of each topic the batch path consumes, one per SAMPLE_EVERY_S."""

    def __init__(self, floor: int, window_s: float) -> None:
        self.floor, self.window_s = floor, window_s
        self.samples: dict[str, deque[LagSample]] = {}

    def due(self, now: float) -> bool:
        """True when the next sample is due (none yet, or the last SAMPLE_EVERY_S ago)."""
        last = max((s[-1].at for s in self.samples.values() if s), default=None)
        return last is None or now - last >= SAMPLE_EVERY_S

    def add(self, now: float, lags: dict[str, int]) -> None:
        for topic, records in lags.items():
            self.samples.setdefault(topic, deque(maxlen=KEPT)).append(LagSample(now, records))

    def clear(self) -> None:
        """Forget the samples: they were of partitions this worker no longer holds alone."""
        self.samples.clear()

    def reason(self, now: float | None = None) -> str | None:
        """Why the lag is a concern (every topic whose lag grows, or no sample for STALL_S while
        partitions are held: the batch path stopped going round), or None. ``now`` is
        :func:`time.monotonic`'s, as the samples' times are."""
        now = time.monotonic() if now is None else now
        newest = max((s[-1].at for s in self.samples.values() if s), default=None)
        found = [reason(t, s, self.floor, self.window_s) for t, s in sorted(self.samples.items())]
        if newest is not None and now - newest > STALL_S:
            found.insert(0, f"the batch path has not come round for {now - newest:.0f} s")
        lines = [line for line in found if line]
        return "; ".join(lines) or None
