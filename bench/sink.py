"""Storage benchmark on the local PostgreSQL and broker.

    nice -n 19 python bench/sink.py   # ~1.5 minutes; writes bench/sink.json and bench/sink.md
    python bench/sink.py --report     # rewrite bench/sink.md from bench/sink.json (+ lag)

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
bench/sink_lag.py measures the sink's lag beside the worker at its full rate.
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from aiokafka.structs import TopicPartition
from sqlalchemy import Engine, create_engine

from apex_stream.client import EventProducer, kafka_admin, kafka_consumer
from apex_stream.events import Event, Opportunity, Outcome, Prediction, PriceTick
from apex_stream.features import FEATURE_VERSION, FEATURES
from apex_stream.inference.members import MEMBERS
from apex_stream.settings import Settings
from apex_stream.simulator import MarketSimulator
from apex_stream.sink import migrations
from apex_stream.sink.rows import TABLES
from apex_stream.sink.writer import payload, write, write_staged
from apex_stream.topics import TopicAdmin, load_specs

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
from pipeline import drop  # noqa: E402
from procstat import cpu_ticks, machine_ticks  # noqa: E402
from pyspy import stacks  # noqa: E402

from tests.support.database import temporary_database  # noqa: E402
from tests.support.events import prediction_for  # noqa: E402
from tests.support.processes import stop_process  # noqa: E402

BATCH = 20_000
#: rows/s from one sink process that issue 4 asks for
GOAL = 300_000
OPPORTUNITIES = int(os.environ.get("BENCH_OPPORTUNITIES", "100000"))
SINK_OPPORTUNITIES = int(os.environ.get("BENCH_SINK_OPPORTUNITIES", "200000"))
SINK_TOPICS = ("prices", "opportunities", "predictions", "outcomes")
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
            prediction_for(
                o,
                0.6,
                model_scores={m: 0.6 for m in MEMBERS},
                model_versions={m: "1.0.0" for m in MEMBERS},
                latency_ms=4.0,
                feature_version=FEATURE_VERSION,
                features=[None if rng.random() < 0.05 else rng.random() for _ in FEATURES],
            )
            for o in opportunities
        ],
        Outcome: [o for s in steps for o in s.outcomes],
    }


@contextmanager
def migrated_database(revision: str = "head") -> Iterator[str]:
    """A throwaway database with the schema applied."""
    with temporary_database("apex_bench") as url:
        migrations.upgrade(url, revision, quiet=True)
        yield url


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


def start_sink(settings: Settings, url: str, log: Path) -> subprocess.Popen[bytes]:
    """``apex-stream sink`` as a process of its own on ``settings``' topics and ``url``."""
    env = os.environ | {
        "APEX_TOPIC_PREFIX": settings.topic_prefix,
        "APEX_APP_ID": settings.app_id,
        "APEX_LOG_LEVEL": "WARNING",
        "APEX_SINK_METRICS_PORT": "0",  # several may run at once
        "DATABASE_URL": url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "apex_stream.cli", "sink"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


class Offsets:
    """The log end offsets of the sink's topics and the sink group's committed offsets."""

    def __init__(self, settings: Settings) -> None:
        self.group = f"{settings.app_id}-sink"
        specs = load_specs(settings.topics_dir)
        self.partitions = [
            TopicPartition(settings.topic_name(t), p)
            for t in SINK_TOPICS
            for p in range(specs[t].partitions)
        ]
        self.admin = kafka_admin(settings)
        self.consumer = kafka_consumer(settings)

    async def __aenter__(self) -> Offsets:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def ends(self) -> dict[Any, int]:
        return await self.consumer.end_offsets(self.partitions)

    async def committed(self) -> dict[Any, int]:
        found = await self.admin.list_consumer_group_offsets(self.group)
        return {tp: found[tp].offset if tp in found else 0 for tp in self.partitions}


def processes(*needles: bytes) -> list[int]:
    """Processes whose command line holds any of ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                cmdline = (entry / "cmdline").read_bytes()
                if any(n in cmdline for n in needles):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def total_ticks(pids: list[int]) -> int:
    ticks = 0
    for pid in pids:
        with suppress(OSError):  # ended meanwhile
            ticks += cpu_ticks(pid)
    return ticks


class Cpu:
    """CPU ticks of the sink processes, of the PostgreSQL processes serving them (their
    database's backends and the WAL writer, checkpointer and background writer) and of the
    broker."""

    def __init__(self, sinks: list[int], database: str) -> None:
        self.sinks, self.database = sinks, database.rsplit("/", 1)[1].encode()

    def sample(self) -> dict[str, int]:
        busy, _ = machine_ticks()
        postgres = processes(
            b"postgres: apex " + self.database,
            b"postgres: walwriter",
            b"postgres: checkpointer",
            b"postgres: background writer",
        )
        return {
            "sink": total_ticks(self.sinks),
            "postgres": total_ticks(postgres),
            "kafka": total_ticks(processes(b"kafka.Kafka")),
            "machine": busy,
        }


def cores(first: dict[str, int], last: dict[str, int], seconds: float) -> dict[str, float]:
    """Cores each part used between two samples."""
    hz = os.sysconf("SC_CLK_TCK")
    return {k: round((last[k] - first[k]) / hz / seconds, 2) for k in first}


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
    async with TopicAdmin(settings) as admin:
        await admin.create()
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
    await drop(settings)
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


def machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def limits(r: dict[str, Any]) -> list[str]:
    """What stands between the figures and the goal of 300,000 rows/s from one sink process."""
    w, sink = r["writer"], r["sink"]
    over = [t for t, x in w.items() if x["write"] >= GOAL]
    lines = [
        "## Against the goal of 300,000 rows/s from one sink process",
        "",
        f"Not reached: the sink process stores {sink['rows_per_s']:,.0f} rows/s from Kafka and "
        f"the writer {r['together_rows_per_s']:,.0f} rows/s with the four tables together.",
        "",
        "- PostgreSQL: with the rows already encoded, one COPY per batch and table takes "
        + ", ".join(f"{x['write']:,.0f}/s into {t}" for t, x in w.items())
        + f" ({', '.join(over) or 'none'} over 300,000/s). Predictions are the heaviest rows "
        "(three indexes, two jsonb documents and 29 features each).",
        "- Python: encoding alone runs at "
        + ", ".join(f"{x['encode']:,.0f}/s ({t})" for t, x in w.items())
        + ", so one table after the other, encoding then writing, gives the encode + write "
        "column.",
    ]
    profile = sink.get("profile")
    if profile:
        per_row = profile["gil_busy"] / profile["rows_per_s"] * 1e6
        stages = profile["stages"]
        lines.append(
            f"- The sink process: its Python work takes {per_row:.1f} µs of GIL per row "
            f"(fetching {stages['aiokafka: fetch responses to ConsumerRecords']:.0%}, decoding "
            f"and validating {stages['decode + validate (msgspec, __post_init__)']:.0%}, "
            f"encoding {stages['encode binary COPY rows']:.0%}), so one interpreter carries "
            f"at most about {1e6 / per_row:,.0f} rows/s however the database keeps up; the "
            f"rest of the time ({1 - profile['gil_busy']:.0%}) it waits on fetches and on "
            "PostgreSQL. Two cores hold the sink, PostgreSQL and the broker."
        )
    if profile:
        cores, rate = sink["cores"], sink["rows_per_s"]
        sink_us, pg_us = (cores[p] / rate * 1e6 for p in ("sink", "postgres"))
        pg_cores = GOAL * pg_us / 1e6
        left_us = (os.cpu_count() - pg_cores) / GOAL * 1e6
        fetch_decode = sink_us * (
            stages["aiokafka: fetch responses to ConsumerRecords"]
            + stages["decode + validate (msgspec, __post_init__)"]
        )
        lines.append(
            f"- CPU per row (cores in use / rows/s in (3)): the sink process {sink_us:.1f} µs, "
            f"PostgreSQL {pg_us:.1f} µs. At {GOAL:,} rows/s that is "
            f"{GOAL * (sink_us + pg_us) / 1e6:.2f} cores of the machine's {os.cpu_count()}, "
            f"before the broker's share. PostgreSQL alone would take {pg_cores:.2f} cores, "
            f"leaving the sink {left_us:.1f} µs of CPU per row, while aiokafka's record "
            f"objects and msgspec's decoding take {fetch_decode:.1f} µs by themselves (their "
            "shares above). So the goal needs more cores (several sink processes in one "
            "consumer group, PostgreSQL on cores of its own) rather than a faster loop."
        )
    return lines


def report() -> None:
    """bench/sink.md from sink.json and, when there, sink_lag.json."""
    r = json.loads((HERE / "sink.json").read_text())
    w = r["writer"]
    lines = [
        "# Storage benchmark",
        "",
        f"`{r['command']}` on {r['machine']}, PostgreSQL {r['postgres']} (the local cluster, "
        "`synchronous_commit=off`, as `apex-stream up` starts it); the broker, PostgreSQL "
        f"and the benchmark share the machine. {BATCH:,}-row batches, a transaction each.",
        "",
        "## (1) The writer, per table",
        "",
        "| table | rows | encode + write | encode alone | write alone (the database) "
        "| write alone, staging path | write alone, schema before 0005 "
        "| redelivery (adds nothing) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for table, x in w.items():
        lines.append(
            f"| {table} | {x['rows']:,} | **{x['encode_and_write']:,.0f}/s** "
            f"| {x['encode']:,.0f}/s | {x['write']:,.0f}/s | {x['write_staged']:,.0f}/s "
            f"| {x['write_with_time_index']:,.0f}/s | {x['redelivery']:,.0f}/s |"
        )
    lines += [
        "",
        "- encode + write: events to rows to the table, one batch after the other;",
        "- encode alone: the Python side, `TableSpec.encode` (one binary COPY tuple per event);",
        "- write alone: rows already encoded, one `COPY ... FROM STDIN (FORMAT BINARY)` into "
        "the table per batch: what the database takes;",
        "- staging path: the same rows through a temporary staging table and "
        "`INSERT ... ON CONFLICT DO NOTHING`, the path a batch takes only when its COPY meets a "
        "stored key;",
        "- schema before 0005: with the `(time DESC)` indexes that migration 0005 drops;",
        "- redelivery: the same batches again; each COPY stops at its first duplicate key and "
        "the staging path adds nothing.",
        "",
        f"## (2) The four tables together, as the sink writes them: "
        f"**{r['together_rows_per_s']:,.0f} rows/s**",
        "",
        "Each batch's tables are written in parallel (one connection each) while the next "
        "batch is encoded.",
        "",
        f"## (3) The sink process, Kafka to the tables: **{r['sink']['rows_per_s']:,.0f} rows/s**",
        "",
        f"`apex-stream sink` draining {r['sink']['rows']:,} events already in Kafka "
        "(rows/s between 10% and 90% of the committed offsets).",
        "",
        "Cores in use meanwhile (of the machine's {cores}): the sink process {sink}, the "
        "PostgreSQL processes serving it {postgres}, the broker {kafka}; the whole machine "
        "{machine}.".format(cores=os.cpu_count(), **r["sink"]["cores"]),
    ]
    two = r["sink"].get("two_processes")
    if two:
        lines += [
            "",
            f"Two sink processes in one consumer group on the same events: "
            f"{two['rows_per_s']:,.0f} rows/s; cores in use: the sink processes "
            "{sink}, PostgreSQL {postgres}, the broker {kafka}; the whole machine "
            "{machine}.".format(**two["cores"]),
        ]
    profile = r["sink"].get("profile")
    if profile:
        lines += [
            "",
            "Where the sink's Python time goes (py-spy `--gil` at 100 Hz for "
            f"{profile.get('seconds', PROFILE_S)} s of a second run, "
            f"{profile['rows_per_s']:,.0f} rows/s under the profiler, "
            "`bench/sink-profile.txt`): some thread held the GIL "
            f"{profile['gil_busy']:.0%} of the time; shares of those samples, inclusive:",
            "",
            "| stage | share |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.1%} |" for k, v in profile["stages"].items()]
        lines += ["", "Top functions by own samples:", "", "| function | share |", "|---|---|"]
        lines += [f"| `{f}` | {s:.1%} |" for f, s in profile["top_self"]]
    lines += ["", *limits(r)]
    lag_file = HERE / "sink_lag.json"
    if lag_file.exists():
        from sink_lag import report_lines

        lines += ["", *report_lines(json.loads(lag_file.read_text()))]
    (HERE / "sink.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    if "--report" in sys.argv:
        report()
        return
    all_events = events(OPPORTUNITIES)
    with migrated_database() as url:
        engine: Engine = create_engine(url)
        with engine.connect() as connection:
            postgres = connection.exec_driver_sql("SHOW server_version").scalar()
        engine.dispose()
    result = {
        "command": "nice -n 19 python bench/sink.py",
        "machine": machine(),
        "postgres": postgres,
        "batch_rows": BATCH,
        "writer": writer_rates(all_events),
        "together_rows_per_s": together_rate(all_events),
        "sink": asyncio.run(sink_rate(events(SINK_OPPORTUNITIES, seed=4))),
    }
    (HERE / "sink.json").write_text(json.dumps(result, indent=2) + "\n")
    report()


if __name__ == "__main__":
    main()
