"""Storage benchmark on the local PostgreSQL and broker.

    nice -n 19 python -m bench.sink   # ~1.5 minutes; writes bench/sink.json and bench/sink.md
    python -m bench.sink --report     # rewrite bench/sink.md from bench/sink.json (+ lag)

On fresh databases, with the rows the sink writes (predictions carry their 29 features):
(1) per table, the writer: events -> binary COPY rows (``TableSpec.encode``) -> COPY into the
    table, 20,000-row batches, a transaction each; and each phase alone: encoding, writing
    rows already encoded (what the database takes; also through the staging + ON CONFLICT
    path, and into the schema before migration 0005), and a redelivery of the same batches
    (which adds nothing);
(2) the four tables together as the sink writes them: each 20,000-event batch's tables in
    parallel, a connection each, while the next batch is encoded;
(3) the sink process end to end (``apex-stream sink``): the events already in Kafka -> the
    tables, rows/s from the consumer group's committed offsets and the cores it, PostgreSQL
    and the broker used; then again while py-spy samples it (bench/sink-profile.txt).
bench/sink_lag.py measures the sink's lag beside the worker at its full rate; both write
bench/sink.md (bench/harness/sink_report.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine

from apex_stream.client import EventProducer
from apex_stream.events import Event, Opportunity, Outcome, Prediction, PriceTick
from apex_stream.features import FEATURE_VERSION, FEATURES
from apex_stream.inference.members import MEMBERS
from apex_stream.settings import Settings
from apex_stream.simulator import MarketSimulator
from apex_stream.sink.rows import TABLES
from apex_stream.sink.writer import payload, write, write_staged
from bench.harness.database import migrated_database
from bench.harness.offsets import Offsets
from bench.harness.processes import start_sink, stop_process
from bench.harness.procstat import Cpu, cores, machine
from bench.harness.pyspy import stacks
from bench.harness.sink_report import write_report
from bench.harness.topics import create_topics, drop_topics

HERE = Path(__file__).parent

BATCH = 20_000
OPPORTUNITIES = int(os.environ.get("BENCH_OPPORTUNITIES", "100000"))
SINK_OPPORTUNITIES = int(os.environ.get("BENCH_SINK_OPPORTUNITIES", "200000"))
PROFILE_S = 5
PY_SPY = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def events(n: int, seed: int = 3) -> dict[type[Event], list[Any]]:
    """The simulated market's events for ``n`` opportunities and a prediction for each, with
    features as the worker records them (29 values, about 5% missing)."""
    steps = list(MarketSimulator(seed, start_time=time.time() - n / 200 - 60).run(opportunities=n))
    opportunities = [o for s in steps for o in s.opportunities]
    rng = random.Random(seed)
    return {
        PriceTick: [p for s in steps for p in s.prices],
        Opportunity: opportunities,
        Prediction: [
            Prediction(
                opportunity_id=o.opportunity_id,
                route_id=o.route_id,
                chain=o.chain,
                score=0.6,
                decision=True,
                threshold=0.5,
                strategy="weighted",
                model_scores={m: 0.6 for m in MEMBERS},
                model_versions={m: "1.0.0" for m in MEMBERS},
                latency_ms=4.0,
                opportunity_timestamp=o.timestamp,
                timestamp=o.timestamp + 0.01,
                recommendation="EXECUTE",
                confidence=0.6,
                feature_version=FEATURE_VERSION,
                features=[None if rng.random() < 0.05 else rng.random() for _ in FEATURES],
            )
            for o in opportunities
        ],
        Outcome: [o for s in steps for o in s.outcomes],
    }


def chunks(rows: list[Any]) -> list[list[Any]]:
    return [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]


def writer_rates(all_events: dict[type[Event], list[Any]]) -> dict[str, dict[str, float]]:
    """(1): per table, rows/s of encode + write, of each alone, and of a redelivery."""
    rates = {}
    with migrated_database() as url, migrated_database("0004") as old_url:
        engine, old_engine = create_engine(url), create_engine(old_url)
        try:
            for cls, evs in all_events.items():
                spec = TABLES[cls]
                started = time.perf_counter()
                batches = []
                for i, chunk in enumerate(chunks(evs)):
                    batch = [spec.encode(e, 0, i * BATCH + j) for j, e in enumerate(chunk)]
                    write(engine, spec, batch)
                    batches.append(batch)
                both = time.perf_counter() - started
                started = time.perf_counter()
                again = [[spec.encode(e, 0, 0) for e in chunk] for chunk in chunks(evs)]
                encoding = time.perf_counter() - started
                del again
                with engine.begin() as connection:
                    connection.exec_driver_sql(f"TRUNCATE {spec.name}")
                started = time.perf_counter()
                for batch in batches:
                    write(engine, spec, batch)
                writing = time.perf_counter() - started
                started = time.perf_counter()
                assert sum(write(engine, spec, batch) for batch in batches) == 0
                redelivery = time.perf_counter() - started
                with engine.begin() as connection:
                    connection.exec_driver_sql(f"TRUNCATE {spec.name}")
                started = time.perf_counter()
                for batch in batches:
                    write_staged(engine, spec, payload(batch))
                staged = time.perf_counter() - started
                n = len(evs)
                rates[spec.name] = {
                    "rows": n,
                    "encode_and_write": n / both,
                    "encode": n / encoding,
                    "write": n / writing,
                    "write_staged": n / staged,
                    "redelivery": n / redelivery,
                    "write_with_time_index": n / write_time(old_engine, spec, batches),
                }
                print(
                    f"(1) {spec.name}: "
                    + ", ".join(f"{k} {v:,.0f}" for k, v in rates[spec.name].items()),
                    flush=True,
                )
        finally:
            engine.dispose()
            old_engine.dispose()
    return rates


def write_time(engine: Engine, spec: Any, batches: list[list[bytes]]) -> float:
    """Seconds to write encoded batches into an empty table."""
    started = time.perf_counter()
    for batch in batches:
        write(engine, spec, batch)
    return time.perf_counter() - started


def together_rate(all_events: dict[type[Event], list[Any]]) -> float:
    """(2): the four tables as the sink writes them, rows/s."""
    total = sum(len(v) for v in all_events.values())
    k = -(-total // BATCH)
    batches = [
        {cls: evs[i * len(evs) // k : (i + 1) * len(evs) // k] for cls, evs in all_events.items()}
        for i in range(k)
    ]
    with migrated_database() as url, ThreadPoolExecutor(len(TABLES)) as pool:
        engine = create_engine(url)
        try:
            started = time.perf_counter()
            pending: list[Any] = []
            for i, batch in enumerate(batches):
                rows = {
                    cls: [TABLES[cls].encode(e, 0, i * BATCH + j) for j, e in enumerate(evs)]
                    for cls, evs in batch.items()
                }
                for future in pending:
                    future.result()
                pending = [pool.submit(write, engine, TABLES[c], r) for c, r in rows.items()]
            for future in pending:
                future.result()
            rate = total / (time.perf_counter() - started)
        finally:
            engine.dispose()
    print(f"(2) four tables together: {rate:,.0f} rows/s ({total:,} rows)", flush=True)
    return rate


STAGES = {
    "aiokafka: fetch responses to ConsumerRecords": ("(aiokafka/consumer/fetcher.py",),
    "decode + validate (msgspec, __post_init__)": ("(events.py",),
    "encode binary COPY rows": ("(sink/rows.py",),
    "writer threads: COPY payload, psycopg": ("(sink/writer.py", "(psycopg/"),
    "offset commits": ("commit (aiokafka/consumer/consumer.py",),
}


def stage_shares(raw: Path, seconds: float, rate: int) -> dict[str, Any]:
    """py-spy ``--gil`` samples of the sink process: how busy its GIL was, per stage
    (inclusive) and the top functions by own samples."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    busy = 0
    for frames, n in stacks(raw):
        busy += n
        own[frames[-1]] += n
        for name, needles in STAGES.items():
            if any(needle in f for f in frames for needle in needles):
                inclusive[name] += n
    shares = {name: round(inclusive[name] / busy, 4) for name in STAGES}
    shares["other: event loop, asyncio, gc"] = round(1 - sum(shares.values()), 4)
    return {
        "samples": busy,
        "gil_busy": round(busy / (seconds * rate), 3),
        "stages": shares,
        "top_self": [(f, round(c / busy, 4)) for f, c in own.most_common(12)],
    }


async def drain(
    all_events: dict[type[Event], list[Any]],
    profile: Path | None = None,
    copies: int = 1,
) -> tuple[float, dict[str, float], float]:
    """``copies`` sink processes in one group draining the events from Kafka: rows/s and
    the cores used by them, by PostgreSQL and by the broker, between 10% and 90% of the rows
    committed; with py-spy recording up to PROFILE_S of the first into ``profile`` when given
    (the third value: for how long it recorded the sink at work)."""
    total = sum(len(v) for v in all_events.values())
    settings = Settings(
        topic_prefix=f"sinkbench{uuid.uuid4().hex[:6]}.", app_id=f"sinkbench{uuid.uuid4().hex[:6]}"
    )
    await create_topics(settings)
    async with EventProducer(settings) as producer:
        for evs in all_events.values():
            await producer.send_many(evs)
    samples: list[tuple[float, int, dict[str, int]]] = []
    spy, spied = None, 0.0
    with migrated_database() as url:
        sinks = [start_sink(settings, url, HERE / ".sink.log") for _ in range(copies)]
        sink = sinks[0]
        cpu = Cpu([s.pid for s in sinks], url)
        try:
            async with Offsets(settings) as offsets:
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline and sink.poll() is None:
                    done = sum((await offsets.committed()).values())
                    samples.append((time.monotonic(), done, cpu.sample()))
                    if done >= total:
                        break
                    if profile and done > 0 and spy is None:
                        spied = time.monotonic()
                        spy = subprocess.Popen(
                            [str(PY_SPY), "record", "-p", str(sink.pid), "--gil", "-r", "100"]
                            + ["-d", str(PROFILE_S), "-f", "raw", "-o", str(profile)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    await asyncio.sleep(0.2)
        finally:
            if spy is not None:
                spy.wait()
            for s in sinks:
                stop_process(s)
    await drop_topics(settings)
    if samples[-1][1] < total:
        raise RuntimeError(f"the sink stored {samples[-1][1]} of {total} rows; see .sink.log")
    lo = next(s for s in samples if s[1] >= 0.1 * total)
    hi = next(s for s in samples if s[1] >= 0.9 * total)
    spied = min(PROFILE_S, samples[-1][0] - spied) if spied else 0.0
    return (hi[1] - lo[1]) / (hi[0] - lo[0]), cores(lo[2], hi[2], hi[0] - lo[0]), spied


async def sink_rate(all_events: dict[type[Event], list[Any]]) -> dict[str, Any]:
    """(3): the sink process end to end, then the same again under py-spy for its profile."""
    rate, used, _ = await drain(all_events)
    total = sum(len(v) for v in all_events.values())
    print(f"(3) sink process, Kafka -> 4 tables: {rate:,.0f} rows/s ({total:,} rows)", flush=True)
    print(f"    cores used: {used}", flush=True)
    result: dict[str, Any] = {"rows": total, "rows_per_s": rate, "cores": used}
    if PY_SPY:
        raw = HERE / "sink-profile.txt"
        rate, _, spied = await drain(all_events, profile=raw)
        result["profile"] = stage_shares(raw, spied, 100) | {
            "rows_per_s": rate,
            "seconds": round(spied, 1),
        }
        busy = result["profile"]["gil_busy"]
        print(f"    under py-spy: {rate:,.0f} rows/s, GIL held {busy:.0%} of the time", flush=True)
        for name, share in result["profile"]["stages"].items():
            print(f"    {share:6.1%}  {name}", flush=True)
    rate, used, _ = await drain(all_events, copies=2)
    print(f"    two sink processes in one group: {rate:,.0f} rows/s, cores {used}", flush=True)
    result["two_processes"] = {"rows_per_s": rate, "cores": used}
    return result


def main() -> None:
    if "--report" in sys.argv:
        write_report()
        return
    all_events = events(OPPORTUNITIES)
    with migrated_database() as url:
        engine: Engine = create_engine(url)
        with engine.connect() as connection:
            postgres = connection.exec_driver_sql("SHOW server_version").scalar()
        engine.dispose()
    result = {
        "command": "nice -n 19 python -m bench.sink",
        "machine": machine(),
        "postgres": postgres,
        "batch_rows": BATCH,
        "writer": writer_rates(all_events),
        "together_rows_per_s": together_rate(all_events),
        "sink": asyncio.run(sink_rate(events(SINK_OPPORTUNITIES, seed=4))),
    }
    (HERE / "sink.json").write_text(json.dumps(result, indent=2) + "\n")
    write_report()


if __name__ == "__main__":
    main()
