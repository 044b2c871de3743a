"""Storage benchmark on the local PostgreSQL.

    python bench/sink.py        # ~2 minutes; writes bench/sink.json

(1) rows/s per table through the idempotent COPY writer (event -> row conversion, binary COPY
into staging, INSERT ... ON CONFLICT DO NOTHING, commit), 20,000-row batches, fresh database;
(2) the sink end to end: events already in Kafka -> tables, rows/s for all four topics
together, to compare with the pipeline's throughput (bench/README.md).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine

from apex_stream.client import EventProducer
from apex_stream.events import Opportunity, Outcome, Prediction, PriceTick
from apex_stream.settings import Settings
from apex_stream.simulator import MarketSimulator
from apex_stream.sink import migrations
from apex_stream.sink.agent import Sink
from apex_stream.sink.rows import TABLES
from apex_stream.sink.writer import write
from apex_stream.topics import TopicAdmin

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
from pipeline import drop  # noqa: E402

from tests.integration.database import temporary_database  # noqa: E402

BATCH = 20_000


def events(n: int) -> dict[type, list]:
    steps = list(MarketSimulator(3, start_time=time.time() - n / 200 - 60).run(opportunities=n))
    opportunities = [o for s in steps for o in s.opportunities]
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
                model_scores={"xgboost": 0.6, "onnx": 0.5, "online": 0.7},
                model_versions={"xgboost": "1.0.0", "onnx": "1.0.0", "online": "1.0.0"},
                latency_ms=4.0,
                opportunity_timestamp=o.timestamp,
                timestamp=o.timestamp + 0.01,
            )
            for o in opportunities
        ],
        Outcome: [o for s in steps for o in s.outcomes],
    }


@contextmanager
def migrated_database() -> Iterator[str]:
    """A throwaway database with the schema applied."""
    with temporary_database("apex_bench") as url:
        migrations.upgrade(url, quiet=True)
        yield url


def writer_rates(all_events: dict[type, list]) -> dict[str, float]:
    rates = {}
    with migrated_database() as url:
        engine = create_engine(url)
        try:
            for cls, evs in all_events.items():
                spec = TABLES[cls]
                started = time.perf_counter()
                for i in range(0, len(evs), BATCH):
                    chunk = evs[i : i + BATCH]
                    write(engine, spec, [spec.row(e, 0, i + j) for j, e in enumerate(chunk)])
                rates[spec.name] = len(evs) / (time.perf_counter() - started)
                print(
                    f"(1) {spec.name}: {rates[spec.name]:,.0f} rows/s ({len(evs):,} rows)",
                    flush=True,
                )
        finally:
            engine.dispose()
    return rates


async def sink_rate(all_events: dict[type, list]) -> float:
    settings = Settings(topic_prefix=f"sinkbench{uuid.uuid4().hex[:6]}.")
    async with TopicAdmin(settings) as admin:
        await admin.create()
    async with EventProducer(settings) as producer:
        for evs in all_events.values():
            await producer.send_many(evs)
    total = sum(len(v) for v in all_events.values())
    with migrated_database() as url:
        sink = Sink(settings.model_copy(update={"database_url": url}))
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(sink.run(stop))
        while sum(sink.written.values()) < total and not task.done():
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
    await drop(settings)
    rate = total / elapsed
    print(f"(2) sink, Kafka -> 4 tables: {rate:,.0f} rows/s ({total:,} rows)", flush=True)
    return rate


def main() -> None:
    all_events = events(100_000)
    result = {
        "command": "python bench/sink.py",
        "batch_rows": BATCH,
        "writer_rows_per_s": writer_rates(all_events),
        "sink_rows_per_s": asyncio.run(sink_rate(all_events)),
    }
    (HERE / "sink.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
