"""The real traffic mix for the pipeline benchmarks, and what a user of `predictions` sees.

- :class:`Traffic`: the simulator's stream as `apex-stream produce --rate R` sends it (price
  ticks, opportunities, one outcome per opportunity after its block delay), encoded once.
- :class:`Sender`: a librdkafka producer (what most scanners use; `murmur2_random` partitions
  like Kafka's Java client), sending the traffic as fast as it can or paced at a rate, noting
  when each opportunity was handed to it.
- :class:`Arrivals`: a librdkafka consumer of `predictions` on a thread of its own, noting when
  each prediction arrives: latency is arrival minus the opportunity's send time.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from apex_stream.events import encode
from apex_stream.settings import Settings
from apex_stream.simulator import MarketSimulator, SimConfig

TOPICS = ("prices", "opportunities", "outcomes")
PRICES, OPPORTUNITIES, OUTCOMES = range(3)


@dataclass(frozen=True)
class Traffic:
    """Events in send order: topic index, key, value, sim time (s from the start) and, for
    opportunities, their number (the suffix of their id), else -1."""

    topic: np.ndarray
    keys: list[bytes]
    values: list[bytes]
    times: np.ndarray
    number: np.ndarray
    rate: float  # opportunities per second of sim time

    @classmethod
    def simulate(cls, rate: float, seconds: float, seed: int = 42) -> Traffic:
        """``seconds`` of the market at ``rate`` opportunities per second: its price ticks,
        opportunities and the outcomes that land meanwhile (an outcome comes 0.05-36.5 s after
        its opportunity), as `apex-stream produce --rate RATE` sends them."""
        config = replace(SimConfig(), opportunity_rate=rate)
        sim = MarketSimulator(seed, start_time=time.time() - seconds - 60, config=config)
        start = sim.now
        topic, keys, values, times, number = [], [], [], [], []
        for step in sim.run(duration=seconds, dt=0.05):
            for index, events in enumerate((step.prices, step.opportunities, step.outcomes)):
                stamp = "executed_at" if index == OUTCOMES else "timestamp"
                for e in events:
                    topic.append(index)
                    keys.append(e.key())
                    values.append(encode(e))
                    times.append(getattr(e, stamp) - start)
                    number.append(
                        int(e.opportunity_id.rsplit("-", 1)[1]) if index == OPPORTUNITIES else -1
                    )
        t = np.array(times)
        order = np.argsort(t, kind="stable")
        return cls(
            np.array(topic, np.uint8)[order],
            [keys[i] for i in order.tolist()],
            [values[i] for i in order.tolist()],
            t[order],
            np.array(number, np.int64)[order],
            rate,
        )

    @property
    def opportunities(self) -> int:
        return int((self.topic == OPPORTUNITIES).sum())

    def counts(self) -> dict[str, int]:
        return {name: int((self.topic == i).sum()) for i, name in enumerate(TOPICS)}


class Sender:
    """Produces traffic with librdkafka (its default linger of 5 ms, as a scanner built on it
    would); ``sent_at[k]``: when opportunity ``k`` was handed to it."""

    def __init__(self, settings: Settings, linger_ms: float = 5.0) -> None:
        self.settings = settings
        self.producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "partitioner": "murmur2_random",
                "linger.ms": linger_ms,
                "acks": "all",
                "queue.buffering.max.messages": 2_000_000,
                "queue.buffering.max.kbytes": 2_000_000,
                "batch.size": 1_000_000,
            }
        )
        self.names = [settings.topic_name(t) for t in TOPICS]
        self.sent_at = np.full(0, np.nan)
        self.sent = 0  # opportunities handed to the producer so far

    def _produce(self, traffic: Traffic, lo: int, hi: int, now: float) -> None:
        produce, names = self.producer.produce, self.names
        for i in range(lo, hi):
            while True:
                try:
                    produce(names[traffic.topic[i]], traffic.values[i], traffic.keys[i])
                    break
                except BufferError:
                    self.producer.poll(0.01)
        numbers = traffic.number[lo:hi]
        numbers = numbers[numbers >= 0]
        self.sent_at[numbers] = now
        self.sent += len(numbers)
        self.producer.poll(0)

    def prepare(self, traffic: Traffic) -> None:
        self.sent_at = np.full(int(traffic.number.max()) + 1, np.nan)
        self.sent = 0

    def blast(self, traffic: Traffic) -> None:
        """Everything as fast as librdkafka takes it, then wait for the acknowledgements."""
        self.prepare(traffic)
        n = len(traffic.keys)
        for lo in range(0, n, 10_000):
            self._produce(traffic, lo, min(lo + 10_000, n), time.time())
        self.flush()

    def paced(self, traffic: Traffic, rate: float, tick: float = 0.001) -> None:
        """Each event when its sim time, scaled to ``rate`` opportunities/s, comes due."""
        self.prepare(traffic)
        scale = traffic.rate / rate
        due = traffic.times * scale
        t0 = time.perf_counter()
        wall0 = time.time()
        sent = 0
        n = len(due)
        while sent < n:
            elapsed = time.perf_counter() - t0
            upto = int(np.searchsorted(due, elapsed, side="right"))
            if upto > sent:
                self._produce(traffic, sent, upto, wall0 + elapsed)
                sent = upto
            time.sleep(tick)
        self.flush()

    def flush(self) -> None:
        left = self.producer.flush(120)
        if left:
            raise RuntimeError(f"{left} messages not acknowledged")


class Arrivals:
    """Predictions as a bot sees them: arrival time of each, from a thread of its own."""

    def __init__(self, settings: Settings, sender: Sender, partitions: int = 6) -> None:
        self.sender = sender
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": f"bench-arrivals-{os.getpid()}-{time.time_ns()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        topic = settings.topic_name("predictions")
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.numbers: list[int] = []
        self.arrived: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # consume() returns when it holds num_messages or after timeout: a short timeout,
            # or arrivals would be stamped up to that late
            messages = self.consumer.consume(num_messages=10_000, timeout=0.001)
            now = time.time()
            for m in messages:
                if m.error() is None:
                    self.numbers.append(int(m.key().rsplit(b"-", 1)[1]))
                    self.arrived.append(now)

    @property
    def count(self) -> int:
        return len(self.arrived)

    def wait(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.count >= n

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.consumer.close()

    def latency_ms(self) -> np.ndarray:
        """Arrival minus send time of every prediction (a redelivered one counts once)."""
        numbers = np.array(self.numbers, np.int64)
        arrived = np.array(self.arrived)
        _, first = np.unique(numbers, return_index=True)
        sent = self.sender.sent_at[numbers[first]]
        return (arrived[first] - sent) * 1000.0

    def rate(self) -> float:
        """Predictions per second between the 10th and 90th percentile of arrivals."""
        t = np.sort(np.array(self.arrived))
        lo, hi = int(len(t) * 0.1), int(len(t) * 0.9)
        return (hi - lo) / max(t[hi] - t[lo], 1e-9)
