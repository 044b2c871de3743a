"""The sink's lag while the pipeline runs at its full rate, on the real local broker.

    nice -n 19 python -m bench.sink_lag   # ~2-3 minutes; writes bench/sink_lag.json, bench/sink.md

A worker (started as bench/pipeline.py starts it), `apex-stream sink` and `apex-stream produce`
(the simulated market: prices, opportunities and, after their block delay, outcomes) run at
once as processes of their own on fresh topics and a fresh database. The market is offered
faster than the worker can score (BENCH_LAG_RATE opportunities/s for BENCH_LAG_SECONDS), so the
worker runs at its full rate, its input backlog growing; after the producer stops, the run goes
on while the worker scores its backlog, until it is done or for AFTER_S at most. Every half
second the sampler reads each topic partition's log end offset and the sink group's committed
offset: the sink's lag per topic in messages (end - committed) and in seconds (now minus the
Kafka timestamp of the oldest message it has not committed, read by a consumer of the sampler's
own at the committed offset).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from apex_stream.client import kafka_consumer
from apex_stream.settings import Settings
from bench.harness.database import migrated_database
from bench.harness.offsets import SINK_TOPICS, Offsets
from bench.harness.processes import start_sink, start_worker, stop_process
from bench.harness.procstat import Cpu, cores, machine, total_ticks
from bench.harness.sink_report import lag_lines, write_report
from bench.harness.topics import create_topics, drop_topics

HERE = Path(__file__).parent

RATE = int(os.environ.get("BENCH_LAG_RATE", "5000"))
SECONDS = float(os.environ.get("BENCH_LAG_SECONDS", "60"))
SAMPLE_S = 0.5
AFTER_S = 45.0


class Ages:
    """The Kafka timestamp of the message at given offsets: a consumer of its own, outside
    any group, that seeks each lagging partition to the sink's committed offset and reads one
    small fetch there."""

    def __init__(self, settings: Settings, partitions: list[Any]) -> None:
        self.consumer = kafka_consumer(settings, max_partition_fetch_bytes=4096)
        self.partitions = partitions

    async def __aenter__(self) -> Ages:
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def at(self, offsets: dict[Any, int]) -> dict[Any, float]:
        """Unix time (s) each partition's message at ``offsets`` was appended."""
        for tp, offset in offsets.items():
            self.consumer.seek(tp, offset)
        found: dict[Any, float] = {}
        deadline = time.monotonic() + 2
        while len(found) < len(offsets) and time.monotonic() < deadline:
            fetched = await self.consumer.getmany(*offsets, timeout_ms=200)
            for tp, messages in fetched.items():
                for m in messages:
                    if tp not in found and m.offset == offsets[tp]:
                        found[tp] = m.timestamp / 1000
        return found


class Lag:
    """Per topic, the sink's lag in messages (log end - committed offset) and in seconds (how
    long ago the oldest message it has not committed was appended) at each sample."""

    def __init__(self) -> None:
        self.samples: list[dict[str, Any]] = []

    def add(
        self, t: float, ends: dict[Any, int], committed: dict[Any, int], ages: dict[Any, float]
    ) -> dict[str, Any]:
        now = time.time()
        sample: dict[str, Any] = {
            "t": t,
            "ends": dict.fromkeys(SINK_TOPICS, 0),
            "committed": dict.fromkeys(SINK_TOPICS, 0),
            "lag_messages": dict.fromkeys(SINK_TOPICS, 0),
            "lag_seconds": dict.fromkeys(SINK_TOPICS, 0.0),
        }
        for tp, end in ends.items():
            topic = tp.topic.rsplit(".", 1)[1]
            sample["ends"][topic] += end
            sample["committed"][topic] += committed[tp]
            sample["lag_messages"][topic] += end - committed[tp]
            if tp in ages:
                age = max(now - ages[tp], 0.0)
                sample["lag_seconds"][topic] = max(sample["lag_seconds"][topic], age)
        self.samples.append(sample)
        return sample


def summary(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for topic in SINK_TOPICS:
        msgs = np.array([s["lag_messages"][topic] for s in samples])
        secs = np.array([s["lag_seconds"][topic] for s in samples])
        out[topic] = {
            "max_messages": int(msgs.max()),
            "p95_messages": float(np.percentile(msgs, 95)),
            "max_seconds": round(float(secs.max()), 2),
            "p95_seconds": round(float(np.percentile(secs, 95)), 2),
        }
    return out


def start_producer(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"APEX_TOPIC_PREFIX": settings.topic_prefix, "APEX_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "apex_stream.cli", "produce"]
        + ["--rate", str(RATE), "--duration", str(SECONDS), "--seed", "11"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def run() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    settings = Settings(topic_prefix=f"sinklag{tag}.", app_id=f"sinklag{tag}")
    await create_topics(settings)
    log = HERE / ".sink.log"
    with migrated_database() as url:
        worker = start_worker(settings, HERE / ".worker.log")
        sink = start_sink(settings, url, log)
        producer = None
        try:
            async with Offsets(settings) as offsets, Ages(settings, offsets.partitions) as ages:
                lag = Lag()
                cpu = Cpu([sink.pid], url)
                await asyncio.sleep(5)  # the sink joins its group
                producer = start_producer(settings, log)
                began = time.monotonic()
                first = last = None
                while True:
                    now = time.monotonic()
                    ends, committed = await offsets.ends(), await offsets.committed()
                    behind = {tp: committed[tp] for tp in ends if ends[tp] > committed[tp]}
                    sample = lag.add(now - began, ends, committed, await ages.at(behind))
                    used = cpu.sample() | {
                        "worker": total_ticks([worker.pid]),
                        "producer": total_ticks([producer.pid]),
                    }
                    if producer.poll() is None:
                        first = first or (now, used)
                        last = (now, used, len(lag.samples))
                    e = sample["ends"]
                    scored = e["predictions"] >= e["opportunities"] > 0
                    done = scored and not any(sample["lag_messages"].values())
                    ended = last is not None and producer.poll() is not None
                    if ended and (done or now - last[0] > AFTER_S):  # the backlog can be long
                        break
                    await asyncio.sleep(SAMPLE_S)
        finally:
            if producer is not None and producer.poll() is None:
                stop_process(producer)
            stop_process(sink)
            stop_process(worker)
    await drop_topics(settings)
    assert first is not None and last is not None
    load = lag.samples[: last[2]]
    span = last[0] - first[0]
    during = load[-1]["ends"]
    finished = lag.samples[-1]
    scored = finished["ends"]["predictions"] >= finished["ends"]["opportunities"]
    last_prediction = finished["ends"]["predictions"]
    scored_at = next(s["t"] for s in lag.samples if s["ends"]["predictions"] == last_prediction)
    stored_at = next(
        (s["t"] for s in lag.samples if s["committed"]["predictions"] == last_prediction), None
    )
    return {
        "command": "nice -n 19 python -m bench.sink_lag",
        "machine": machine(),
        "offered_opportunities_per_s": RATE,
        "load_seconds": round(span, 1),
        "produced": finished["ends"],
        "rates_during_load": {
            topic: round(during[topic] / load[-1]["t"], 1) for topic in SINK_TOPICS
        },
        "worker_backlog_at_load_end": during["opportunities"] - during["predictions"],
        "after_load_seconds": round(finished["t"] - load[-1]["t"], 1),
        "worker_backlog_at_end": finished["ends"]["opportunities"] - last_prediction,
        "worker_done_after_s": round(scored_at, 1) if scored else None,
        "sink_done_after_s": round(stored_at, 1) if scored and stored_at else None,
        "rates_after_load": {
            "predictions": round(
                (last_prediction - during["predictions"])
                / max(finished["t"] - load[-1]["t"], 1e-9),
                1,
            )
        },
        "cores_during_load": cores(first[1], last[1], span),
        "lag_during_load": summary(load),
        "lag_after_load": summary(lag.samples[last[2] :] or load[-1:]),
        "samples": [
            {
                "t": round(s["t"], 2),
                "lag_messages": s["lag_messages"],
                "lag_seconds": s["lag_seconds"],
            }
            for s in lag.samples
        ],
    }


def main() -> None:
    result = asyncio.run(run())
    (HERE / "sink_lag.json").write_text(json.dumps(result, indent=2) + "\n")
    for line in lag_lines(result):
        print(line)
    if (HERE / "sink.json").exists():
        write_report()


if __name__ == "__main__":
    main()
