"""End-to-end benchmark of the stream pipeline against the real local broker.

    python bench/pipeline.py            # ~8 minutes; writes bench/pipeline.json and pipeline.md
    python bench/pipeline.py --report   # rewrite bench/pipeline.md from bench/pipeline.json

Measures, in one run, on fresh topics:
  (a) sustained throughput, opportunities -> predictions, full ensemble (one worker process);
  (b) end-to-end latency p50/p95/p99 at fixed offered loads: producer timestamp (the
      opportunity's ``timestamp``, stamped when sent) to the prediction's Kafka record time;
  (c) the same throughput with batch size 1 (per-event inference);
  (d) the ceiling: a bare aiokafka consume-and-produce passthrough of the same messages;
  (e) Faust's own ceiling here: an agent that only counts ``take_events`` (faust_ceiling.py);
  (f) where the worker's time goes during (a): py-spy samples it for 12 s (needs py-spy).
Market prices are produced first so features see a full market; outcomes are not produced.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from apex_stream.events import Opportunity, Prediction, encode
from apex_stream.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pyspy import stacks  # noqa: E402

from apex_stream.simulator import MarketSimulator
from apex_stream.topics import TopicAdmin
from tests.integration.processes import stop_process  # noqa: E402

HERE = Path(__file__).parent
THROUGHPUT_N = int(os.environ.get("BENCH_N", "60000"))
PER_EVENT_N = int(os.environ.get("BENCH_PER_EVENT_N", "5000"))
LOADS = tuple(int(x) for x in os.environ.get("BENCH_LOADS", "1000,5000,10000").split(","))
LOAD_SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "15"))
PORT = 16200


def market(n: int) -> tuple[list, list[Opportunity]]:
    sim = MarketSimulator(42, start_time=time.time() - n / 200 - 30)
    prices, opportunities = [], []
    for step in sim.run(opportunities=n):
        prices += step.prices
        opportunities += step.opportunities
    return prices, opportunities


async def fresh(settings: Settings) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()


async def drop(settings: Settings) -> None:
    """Delete a step's topics (its own and its worker's changelogs) so the broker stays lean."""
    marker = settings.topic_prefix.rstrip(".")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    names = [t for t in await admin.list_topics() if marker in t]
    if names:
        await admin.delete_topics(names)
    await admin.close()


def start_worker(settings: Settings, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = (
        os.environ
        | {
            "APEX_TOPIC_PREFIX": settings.topic_prefix,
            "APEX_WEB_PORT": str(PORT),
            "APEX_APP_ID": f"bench-{settings.topic_prefix.rstrip('.')}",
            "APEX_LOG_LEVEL": "WARNING",
        }
        | extra
    )
    log = (HERE / ".worker.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apex_stream.cli", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2) as r:
                if json.loads(r.read())["recovered"]:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("worker did not start; see bench/.worker.log")
        time.sleep(0.5)


def wait_for_prices(n: int, timeout: float = 120) -> None:
    """Block until the worker has applied ``n`` price ticks (its startup backlog)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("apex_price_ticks_total ") and float(line.split()[1]) >= n:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"the worker did not apply {n} price ticks in {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc)
    left = subprocess.run(
        ["pgrep", "-f", "apex_stream.cli worker"], capture_output=True, text=True
    ).stdout.split()
    print(f"  worker {proc.pid} exited with {proc.returncode}; still running: {left}", flush=True)


async def blast(settings: Settings, topic: str, values: list[bytes], keys: list[bytes]) -> None:
    """Produce as fast as aiokafka can, in per-partition batches."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=5, max_batch_size=1_048_576, acks=1
    )
    await producer.start()
    name = settings.topic_name(topic)
    futures = [await producer.send(name, v, key=k) for v, k in zip(values, keys, strict=True)]
    await asyncio.gather(*futures)
    await producer.stop()


async def record_times(settings: Settings, topic: str, n: int, timeout: float) -> np.ndarray:
    """Kafka record timestamps (s) of the first ``n`` messages of a topic."""
    consumer = AIOKafkaConsumer(
        settings.topic_name(topic),
        group_id=None,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        max_poll_records=50_000,
    )
    await consumer.start()
    times: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(times) < n and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                times += [m.timestamp for m in msgs]
    finally:
        await consumer.stop()
    return np.sort(np.array(times[:n])) / 1000.0


def rate(times: np.ndarray) -> float:
    """Messages per second between the 10th and 90th percentile of arrivals (steady state)."""
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    return (hi - lo) / max(times[hi] - times[lo], 1e-9)


async def throughput(batch_size: int, n: int, prices: list, opportunities: list) -> float:
    settings = Settings(topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    await fresh(settings)
    await blast(settings, "prices", [encode(p) for p in prices], [p.key() for p in prices])
    proc = start_worker(settings, {"APEX_BATCH_MAX_SIZE": str(batch_size)})
    try:
        wait_for_prices(len(prices))
        opps = opportunities[:n]
        await blast(settings, "opportunities", [encode(o) for o in opps], [o.key() for o in opps])
        times = await record_times(settings, "predictions", n, timeout=600)
    finally:
        stop(proc)
        await drop(settings)
    if len(times) < n:
        raise RuntimeError(f"only {len(times)} of {n} predictions arrived")
    return rate(times)


async def latency(load: int, prices: list, opportunities: list) -> dict[str, float]:
    """Offer ``load`` opportunities/s for LOAD_SECONDS, stamped at send time."""
    settings = Settings(topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    await fresh(settings)
    await blast(settings, "prices", [encode(p) for p in prices], [p.key() for p in prices])
    proc = start_worker(settings, {})
    n = int(load * LOAD_SECONDS)
    pool = opportunities
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=1, acks=1)
    await producer.start()
    name = settings.topic_name("opportunities")
    sent = 0
    try:
        wait_for_prices(len(prices))
        t0 = time.monotonic()
        tick = 0.005
        while sent < n:
            due = min(n, int((time.monotonic() - t0) * load) + 1)
            now = time.time()
            for i in range(sent, due):
                o = msgspec.structs.replace(
                    pool[i % len(pool)], timestamp=now, opportunity_id=f"lat-{i}"
                )
                await producer.send(name, encode(o), key=o.key())
            sent = due
            await asyncio.sleep(tick)
        offered = n / (time.monotonic() - t0)
        await producer.flush()
        consumer = AIOKafkaConsumer(
            settings.topic_name("predictions"),
            group_id=None,
            bootstrap_servers=settings.bootstrap_servers,
            auto_offset_reset="earliest",
            max_poll_records=50_000,
        )
        await consumer.start()
        lat: list[float] = []
        deadline = time.monotonic() + 120
        while len(lat) < n and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    p = msgspec.json.decode(m.value, type=Prediction)
                    lat.append(m.timestamp / 1000.0 - p.opportunity_timestamp)
        await consumer.stop()
    finally:
        await producer.stop()
        stop(proc)
        await drop(settings)
    ms = np.array(lat) * 1000
    return {
        "offered_per_s": offered,
        "received": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


async def passthrough(n: int, opportunities: list) -> float:
    """Bare aiokafka: consume opportunities and produce them unchanged, as fast as possible."""
    settings = Settings(topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    await fresh(settings)
    opps = opportunities[:n]
    await blast(settings, "opportunities", [encode(o) for o in opps], [o.key() for o in opps])
    consumer = AIOKafkaConsumer(
        settings.topic_name("opportunities"),
        group_id=None,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        max_poll_records=5_000,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=1, max_batch_size=262_144, acks=-1
    )
    await consumer.start()
    await producer.start()
    out = settings.topic_name("predictions")
    seen = 0
    while seen < n:
        for msgs in (await consumer.getmany(timeout_ms=500)).values():
            for m in msgs:
                await producer.send(out, m.value, key=m.key)
            seen += len(msgs)
    await producer.flush()
    await consumer.stop()
    await producer.stop()
    result = rate(await record_times(settings, "predictions", n, timeout=120))
    await drop(settings)
    return result


STAGES = {
    "Faust consumer fetch and dispatch": ("Fetcher._fetcher",),
    "agents, in all (the stages below and Faust's per-event stream work)": (
        "Agent._execute_actor",
    ),
    "  decode + validate": ("split_valid",),
    "  features (incl. market view refresh)": ("opportunity_features", "MarketView.refresh"),
    "  xgboost": ("XGBoostMember.predict",),
    "  onnx": ("OnnxMember.predict",),
    "  online learner": ("OnlineLearner.predict",),
    "  building predictions": ("Scorer.predictions",),
    "  producing predictions": ("Pipeline.send ",),
    "  producing scored-table changelog": ("Pipeline.put_scored",),
    "aiokafka producer sender (request encoding)": ("Sender._send_produce_req",),
}


def shares(raw: Path) -> dict[str, float]:
    inclusive: Counter[str] = Counter()
    busy = 0
    for frames, count in stacks(raw):
        if "select (selectors.py" in frames[-1]:
            continue
        busy += count
        for name, prefixes in STAGES.items():
            if any(f.startswith(p) for f in frames for p in prefixes):
                inclusive[name] += count
    result = {name: inclusive[name] / busy for name in STAGES}
    agents = next(iter(k for k in STAGES if k.startswith("agents")))
    ours = sum(v for k, v in result.items() if k.startswith("  ") and "sender" not in k)
    result["  remainder: Faust per-event stream work, acks, awaits"] = result[agents] - ours
    return result


async def profile(prices: list, opportunities: list) -> dict[str, float]:
    """(f): shares of the worker's busy samples per stage while it runs at full load."""
    settings = Settings(topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    await fresh(settings)
    await blast(settings, "prices", [encode(p) for p in prices], [p.key() for p in prices])
    worker = start_worker(settings, {})
    raw = Path(tempfile.mkdtemp()) / "profile.txt"
    try:
        wait_for_prices(len(prices))
        await blast(
            settings,
            "opportunities",
            [encode(o) for o in opportunities],
            [o.key() for o in opportunities],
        )
        spy = subprocess.Popen(
            [
                "py-spy",
                "record",
                "-p",
                str(worker.pid),
                "-d",
                "12",
                "-r",
                "100",
                "-f",
                "raw",
                "-o",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await record_times(settings, "predictions", len(opportunities), 300)
        spy.wait()
    finally:
        stop(worker)
        await drop(settings)
    return shares(raw)


async def faust_ceiling(n: int, opportunities: list) -> float:
    """(e): events/s through Faust's stream machinery alone, on a topic holding ``n``."""
    settings = Settings(topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    await fresh(settings)
    opps = opportunities[:n]
    await blast(settings, "opportunities", [encode(o) for o in opps], [o.key() for o in opps])
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "faust_ceiling.py"),
            settings.topic_name("opportunities"),
            str(n),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout.split()
    await drop(settings)
    return float(out[-1])


async def main() -> None:
    prices, opportunities = market(max(THROUGHPUT_N, 20_000))
    print(
        f"simulated {len(opportunities):,} opportunities, {len(prices):,} price ticks", flush=True
    )
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; broker, worker and load generator share it",
        "command": "python bench/pipeline.py",
        "n_throughput": THROUGHPUT_N,
        "n_per_event": PER_EVENT_N,
    }
    results["passthrough_per_s"] = await passthrough(THROUGHPUT_N, opportunities)
    print(f"(d) passthrough: {results['passthrough_per_s']:,.0f}/s", flush=True)
    results["faust_take_events_per_s"] = await faust_ceiling(THROUGHPUT_N, opportunities)
    print(f"(e) faust take_events alone: {results['faust_take_events_per_s']:,.0f}/s", flush=True)
    results["micro_batched_per_s"] = await throughput(
        Settings().batch_max_size, THROUGHPUT_N, prices, opportunities
    )
    print(f"(a) micro-batched pipeline: {results['micro_batched_per_s']:,.0f}/s", flush=True)
    results["per_event_per_s"] = await throughput(1, PER_EVENT_N, prices, opportunities)
    print(f"(c) batch size 1: {results['per_event_per_s']:,.0f}/s", flush=True)
    results["latency"] = {}
    for load in LOADS:
        results["latency"][str(load)] = await latency(load, prices, opportunities)
        print(f"(b) {load}/s: {results['latency'][str(load)]}", flush=True)
    if shutil.which("py-spy"):
        results["profile"] = await profile(prices, opportunities)
    results["micro_batch_vs_per_event"] = (
        results["micro_batched_per_s"] / results["per_event_per_s"]
    )
    results["share_of_passthrough"] = results["micro_batched_per_s"] / results["passthrough_per_s"]
    (HERE / "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(r: dict) -> None:
    """bench/pipeline.md: the figures of one run as tables, with the ratios."""
    lines = [
        "# Pipeline benchmark results",
        "",
        f"Measured by `{r['command']}` on {r['machine']}.",
        "",
        "| measurement | opportunities/s |",
        "|---|---|",
        f"| (a) micro-batched pipeline, full ensemble | {r['micro_batched_per_s']:,.0f} |",
        f"| (c) same pipeline, batch size 1 (per-event inference) | {r['per_event_per_s']:,.0f} |",
        f"| (d) bare aiokafka consume-and-produce passthrough | {r['passthrough_per_s']:,.0f} |",
        f"| (e) Faust `take_events` alone (no work) | {r['faust_take_events_per_s']:,.0f} |",
        "",
        f"- micro-batched / per-event: **{r['micro_batch_vs_per_event']:.1f}x**",
        f"- micro-batched / passthrough ceiling: **{r['share_of_passthrough']:.1%}**",
        "",
        "| offered load | achieved | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|",
    ]
    for load, lat in r["latency"].items():
        lines.append(
            f"| {int(load):,}/s | {lat['offered_per_s']:,.0f}/s | {lat['p50_ms']:,.1f} ms | "
            f"{lat['p95_ms']:,.1f} ms | {lat['p99_ms']:,.1f} ms | {lat['max_ms']:,.1f} ms |"
        )
    lines += [
        "",
        "Latency: the opportunity's `timestamp` (set when sent) to its prediction's "
        "Kafka record time. A load above the pipeline's throughput cannot be sustained: its "
        "latency then grows with the queue for as long as the load lasts.",
        "",
        "## What limits the throughput",
        "",
        f"Faust's per-event stream machinery alone (e) carries "
        f"{r['faust_take_events_per_s']:,.0f} events/s here, against "
        f"{r['passthrough_per_s']:,.0f}/s for a bare aiokafka loop (d): every event passes "
        "Faust's consumer thread, conductor, stream processors and acks one by one, while the "
        "broker, the worker and the load generator share the 2 cores. Batches stay far below "
        "their 1,024 limit, because Faust delivers only a few dozen events within the 5 ms "
        "delay, so XGBoost's fixed cost per call (~0.2 ms) weighs too.",
        "",
    ]
    if "profile" in r:
        lines += [
            "Share of the worker's busy samples during (a) (py-spy, 12 s):",
            "",
            "| stage | share |",
            "|---|---|",
        ]
        lines += [
            f"| {'· ' + name.strip() if name.startswith('  ') else name} | {share:.1%} |"
            for name, share in r["profile"].items()
        ]
        lines.append("")
    (HERE / "pipeline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:] == ["--report"]:
        report(json.loads((HERE / "pipeline.json").read_text()))
    else:
        asyncio.run(main())
