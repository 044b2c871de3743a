"""The stream pipeline on the real traffic mix, against the real local broker.

    python -m bench.pipeline            # ~15 minutes; writes bench/pipeline.json and pipeline.md
    python -m bench.pipeline --report   # rewrite bench/pipeline.md from bench/pipeline.json

Every run offers what `apex-stream produce --rate R` sends (price ticks, opportunities, one
outcome per opportunity after its block delay; bench/harness/traffic.py), on fresh topics,
through a librdkafka producer with its defaults; latency is what a consumer of `predictions`
sees: from handing the opportunity to the producer to the prediction's arrival at a librdkafka
consumer.

  (a) capacity: one worker drains a backlog of the mix; then the highest rate it holds for
      60 s with bounded lag (every prediction within a second, none left behind);
  (b) latency p50/p95/p99 at 1,000, 5,000 and 10,000 opportunities/s offered;
  (c) the same drain with batch size 1 (per-event inference);
  (d) a bare aiokafka consume-and-produce passthrough of the same backlog (whole fetches in,
      one batch per partition out: the I/O the worker does, without any work);
  (e) two workers in one group draining the backlog;
  (f) start: process start to the first prediction, with opportunities waiting;
  (g) recovery: a worker killed with SIGKILL at 1,000/s offered and started again, until
      every prediction arrives within a second again;
  (h) where the worker's time goes while it drains (py-spy).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import TopicPartition

from apex_stream.client import kafka_consumer, kafka_producer
from apex_stream.settings import Settings
from bench.harness.paced import drop, fresh, paced
from bench.harness.processes import start_worker, stop_process
from bench.harness.procstat import cpu_ticks
from bench.harness.pyspy import stacks
from bench.harness.traffic import Arrivals, Sender, Traffic

HERE = Path(__file__).parent
LOG = HERE / ".worker.log"
DRAIN_SECONDS = float(os.environ.get("BENCH_DRAIN_SECONDS", "12"))  # of traffic at GEN_RATE
GEN_RATE = 25_000.0
HOLD_SECONDS = float(os.environ.get("BENCH_HOLD_SECONDS", "60"))
LOADS = tuple(int(x) for x in os.environ.get("BENCH_LOADS", "1000,5000,10000").split(","))
LOAD_SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "30"))
HZ = os.sysconf("SC_CLK_TCK")


def drain(traffic: Traffic, workers: int = 1, env: dict[str, str] | None = None) -> dict:
    """The traffic produced first, then drained by ``workers`` workers: predictions/s."""
    settings = fresh()
    sender = Sender(settings)
    sender.blast(traffic)
    arrivals = Arrivals(settings, sender)
    procs = [start_worker(settings, LOG, env) for _ in range(workers)]
    ticks = [cpu_ticks(p.pid) for p in procs]
    t0 = time.time()
    try:
        complete = arrivals.wait(traffic.opportunities, 600)
        seconds = time.time() - t0
        cores = sum(cpu_ticks(p.pid) - t for p, t in zip(procs, ticks, strict=True)) / HZ
    finally:
        for proc in procs:
            stop_process(proc)
        arrivals.stop()
        drop(settings)
    if not complete:
        raise RuntimeError(f"only {arrivals.count} of {traffic.opportunities} predictions")
    return {
        "per_s": arrivals.rate(),
        "opportunities": traffic.opportunities,
        "counts": traffic.counts(),
        "worker_cores": cores / seconds,
    }


def held(result: dict) -> bool:
    """Bounded lag: every prediction came, the last within a second of the last send, and the
    99th percentile within a second."""
    return (
        result["complete"]
        and result["last_prediction_after_last_send_s"] < 1.0
        and (result["p99_ms"] < 1000)
    )


async def _passthrough(settings: Settings, n: int) -> None:
    """Bare aiokafka: whole fetches of opportunities and outcomes, each opportunity produced
    unchanged to `predictions` in one batch per partition."""
    topics = [settings.topic_name(t) for t in ("opportunities", "outcomes")]
    consumer = kafka_consumer(
        settings,
        fetch_min_bytes=64 * 1024,
        fetch_max_wait_ms=5,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = kafka_producer(settings, max_batch_size=1024 * 1024)
    await consumer.start()
    await producer.start()
    consumer.assign([TopicPartition(t, p) for t in topics for p in range(6)])
    for tp in consumer.assignment():
        consumer.seek(tp, 0)
    out = settings.topic_name("predictions")
    seen = 0
    pending = []
    while seen < n:
        fetch = await consumer.getmany(timeout_ms=5, max_records=1024)
        for tp, records in fetch.items():
            if tp.topic != topics[0]:
                continue
            batch = producer.create_batch()
            for r in records:
                if batch.append(key=r.key, value=r.value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, out, partition=tp.partition))
                    batch = producer.create_batch()
                    batch.append(key=r.key, value=r.value, timestamp=None)
            pending.append(await producer.send_batch(batch, out, partition=tp.partition))
            seen += len(records)
    await asyncio.gather(*pending)
    await consumer.stop()
    await producer.stop()


def passthrough(traffic: Traffic) -> dict:
    settings = fresh()
    sender = Sender(settings)
    sender.blast(traffic)
    arrivals = Arrivals(settings, sender)
    script = (
        "import asyncio; from bench.pipeline import _passthrough;"
        "from apex_stream.settings import Settings;"
        f"asyncio.run(_passthrough(Settings(topic_prefix={settings.topic_prefix!r}), "
        f"{traffic.opportunities}))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=HERE.parent)
    try:
        complete = arrivals.wait(traffic.opportunities, 300)
        proc.wait(60)
    finally:
        arrivals.stop()
        drop(settings)
    if not complete:
        raise RuntimeError("the passthrough did not pass everything")
    return {"per_s": arrivals.rate(), "opportunities": traffic.opportunities}


def start_time(runs: int = 3) -> dict:
    """Process start to the first prediction, 2,000 opportunities waiting (median of runs)."""
    seconds = []
    for _ in range(runs):
        settings = fresh()
        sender = Sender(settings)
        sender.blast(Traffic.simulate(200, 10))
        arrivals = Arrivals(settings, sender)
        t0 = time.time()
        proc = start_worker(settings, LOG)
        try:
            arrivals.wait(1, 60)
            seconds.append(min(arrivals.arrived) - t0)
        finally:
            stop_process(proc)
            arrivals.stop()
            drop(settings)
    return {"median_s": float(np.median(seconds)), "runs_s": seconds}


def recovery(rate: float = 1000, seconds: float = 60, kill_at: float = 20) -> dict:
    """A worker killed with SIGKILL ``kill_at`` s into a paced run and started again: time
    from the kill until predictions arrive within a second of their opportunity again."""
    traffic = Traffic.simulate(rate, seconds)
    settings = fresh()
    sender = Sender(settings)
    proc = start_worker(settings, LOG)
    arrivals = Arrivals(settings, sender)
    killed = {}

    def kill_and_restart() -> None:
        time.sleep(kill_at)
        killed["at"] = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed["proc"] = start_worker(settings, LOG)
        killed["ready"] = time.time()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    try:
        sender.paced(traffic, rate)
        killer.join()
        complete = arrivals.wait(traffic.opportunities, 120)
    finally:
        stop_process(killed.get("proc", proc))
        arrivals.stop()
        drop(settings)
    numbers = np.array(arrivals.numbers)
    arrived = np.array(arrivals.arrived)
    late = (arrived - sender.sent_at[numbers]) > 1.0
    recovered = arrived[late].max() - killed["at"] if late.any() else 0.0
    return {
        "offered_per_s": rate,
        "complete": bool(complete),
        "restart_to_ready_s": killed["ready"] - killed["at"],
        "kill_to_caught_up_s": float(recovered),
        "predictions": int(len(set(arrivals.numbers))),
        "redelivered": int(len(numbers) - len(set(arrivals.numbers))),
        "opportunities": traffic.opportunities,
    }


STAGES = {
    "fetching (aiokafka: fetch responses into records)": ("AIOKafkaConsumer.getmany",),
    "decoding and validating (per batch)": ("split_valid",),
    "features (incl. market view)": ("opportunity_features", "MarketView.refresh"),
    "xgboost": ("XGBoostMember.predict",),
    "onnx": ("OnnxMember.predict",),
    "online learner scoring": ("OnlineLearner.predict",),
    "encoding predictions": ("encode_predictions",),
    "outcome join": ("PartitionJoin.",),
    "learning (online learner, performance)": ("Learning.learn",),
    "drift and health monitor": ("Monitor.",),
    "producing (aiokafka: batches into requests)": ("BatchSource._send", "Sender."),
    "Faust: prices agent": ("attach.<locals>.prices",),
}


def profile(traffic: Traffic) -> dict:
    """(h): shares of the worker's samples holding the GIL, per stage, while it drains."""
    settings = fresh()
    sender = Sender(settings)
    sender.blast(traffic)
    arrivals = Arrivals(settings, sender)
    proc = start_worker(settings, LOG)
    raw = Path(tempfile.mkdtemp()) / "profile.txt"
    spy = subprocess.Popen(
        ["py-spy", "record", "-p", str(proc.pid), "-d", "8", "-r", "100", "--gil"]
        + ["-f", "raw", "-o", str(raw)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        arrivals.wait(traffic.opportunities, 600)
        spy.wait()
    finally:
        stop_process(proc)
        arrivals.stop()
        drop(settings)
    counts: Counter[str] = Counter()
    busy = 0
    for frames, n in stacks(raw):
        busy += n
        for name, prefixes in STAGES.items():
            if any(f.startswith(p) for f in frames for p in prefixes):
                counts[name] += n
    shares = {name: counts[name] / busy for name in STAGES}
    shares["everything else (event loop, Faust, commits, metrics)"] = 1 - sum(shares.values())
    return shares


def main() -> None:
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; broker, worker(s) and load generator share it",
        "command": "python -m bench.pipeline",
    }
    backlog = Traffic.simulate(GEN_RATE, DRAIN_SECONDS)
    print(f"backlog: {backlog.counts()}", flush=True)
    results["passthrough"] = passthrough(backlog)
    print(f"(d) passthrough {results['passthrough']}", flush=True)
    results["drain"] = drain(backlog)
    print(f"(a) drain {results['drain']}", flush=True)
    results["drain_two_workers"] = drain(backlog, workers=2)
    print(f"(e) two workers {results['drain_two_workers']}", flush=True)
    small = Traffic.simulate(GEN_RATE, 1)
    results["drain_batch_size_1"] = drain(small, env={"APEX_BATCH_MAX_SIZE": "1"})
    results["drain_batch_size_1_same_traffic"] = drain(small)
    print(f"(c) batch size 1 {results['drain_batch_size_1']}", flush=True)
    attempts = []
    rate = round(results["drain"]["per_s"] * 0.9, -3)
    for _ in range(3):
        attempt = paced(rate, HOLD_SECONDS, LOG) | {"rate": rate}
        attempt["held"] = held(attempt)
        attempts.append(attempt)
        print(f"(a) held at {rate:,.0f}/s? {attempt}", flush=True)
        if attempt["held"]:
            break
        rate = round(rate * 0.8, -3)
    results["hold_attempts"] = attempts
    results["latency"] = {}
    for load in LOADS:
        results["latency"][str(load)] = paced(load, LOAD_SECONDS, LOG)
        print(f"(b) {load}/s: {results['latency'][str(load)]}", flush=True)
    results["start"] = start_time()
    print(f"(f) start {results['start']}", flush=True)
    results["recovery"] = recovery()
    print(f"(g) recovery {results['recovery']}", flush=True)
    if shutil.which("py-spy"):
        results["profile"] = profile(backlog)
    (HERE / "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(r: dict) -> None:
    """bench/pipeline.md: the figures of one run."""
    held_runs = [a for a in r["hold_attempts"] if a["held"]]
    best = max(held_runs, key=lambda a: a["rate"]) if held_runs else None
    drain_rate = r["drain"]["per_s"]
    counts = r["drain"]["counts"]
    per_one = r["drain_batch_size_1"]["per_s"]
    same = r["drain_batch_size_1_same_traffic"]["per_s"]
    lines = [
        "# Pipeline benchmark results",
        "",
        f"Measured by `{r['command']}` on {r['machine']}. The traffic is the simulator's mix "
        "as `apex-stream produce` sends it: price ticks, opportunities and one outcome per "
        "opportunity after its block delay, produced by librdkafka (murmur2_random "
        "partitioner, its default 5 ms linger); latency is from handing an opportunity to the "
        "producer to its prediction's arrival at a librdkafka consumer.",
        "",
        "| measurement | opportunities/s |",
        "|---|---|",
        f"| (a) one worker draining a backlog of {counts['opportunities']:,} opportunities, "
        f"{counts['outcomes']:,} outcomes, {counts['prices']:,} price ticks | "
        f"{drain_rate:,.0f} (worker {r['drain']['worker_cores']:.2f} cores) |",
        "| (a) highest rate held for 60 s with bounded lag | "
        + (f"{best['rate']:,.0f} |" if best else "none of the rates tried |"),
        f"| (c) batch size 1, draining {r['drain_batch_size_1']['opportunities']:,} | "
        f"{per_one:,.0f} (micro-batched on the same backlog: {same:,.0f}, "
        f"{same / per_one:.1f}x) |",
        f"| (d) bare aiokafka passthrough of the same backlog | {r['passthrough']['per_s']:,.0f} "
        f"(the worker: {drain_rate / r['passthrough']['per_s']:.0%} of it) |",
        f"| (e) two workers in one group draining it | {r['drain_two_workers']['per_s']:,.0f} "
        f"({r['drain_two_workers']['per_s'] / drain_rate:.2f}x one) |",
        "",
        "Held-rate attempts (60 s each; held: every prediction arrived, the last within 1 s of "
        "the last send, p99 under 1 s):",
        "",
        "| offered | p50 | p99 | last prediction after last send | worker cores | held |",
        "|---|---|---|---|---|---|",
    ]
    for a in r["hold_attempts"]:
        lines.append(
            f"| {a['offered_per_s']:,.0f}/s | {a['p50_ms']:,.1f} ms | {a['p99_ms']:,.1f} ms | "
            f"{a['last_prediction_after_last_send_s']:.2f} s | {a['worker_cores']:.2f} | "
            f"{'yes' if a['held'] else 'no'} |"
        )
    lines += [
        "",
        "| offered load | achieved | p50 | p95 | p99 | max | worker cores |",
        "|---|---|---|---|---|---|---|",
    ]
    for load, lat in r["latency"].items():
        lines.append(
            f"| {int(load):,}/s | {lat['offered_per_s']:,.0f}/s | {lat['p50_ms']:,.1f} ms | "
            f"{lat['p95_ms']:,.1f} ms | {lat['p99_ms']:,.1f} ms | {lat['max_ms']:,.1f} ms | "
            f"{lat['worker_cores']:.2f} |"
        )
    rec = r["recovery"]
    lines += [
        "",
        f"- (f) start: process start to the first prediction {r['start']['median_s']:.1f} s "
        f"(median of {len(r['start']['runs_s'])}: "
        + ", ".join(f"{s:.1f}" for s in r["start"]["runs_s"])
        + " s).",
        f"- (g) recovery at {rec['offered_per_s']:,.0f}/s: SIGKILL, restarted at once (ready "
        f"{rec['restart_to_ready_s']:.1f} s later); every prediction within 1 s of its "
        f"opportunity again {rec['kill_to_caught_up_s']:.1f} s after the kill; "
        f"{rec['predictions']:,} of {rec['opportunities']:,} opportunities predicted, "
        f"{rec['redelivered']:,} predictions redelivered (at least once).",
        "",
    ]
    if "profile" in r:
        lines += [
            "## Where the worker's time goes while it drains (py-spy, samples holding the GIL)",
            "",
            "| stage | share |",
            "|---|---|",
            *(f"| {name} | {share:.1%} |" for name, share in r["profile"].items()),
            "",
        ]
    (HERE / "pipeline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:] == ["--report"]:
        report(json.loads((HERE / "pipeline.json").read_text()))
    else:
        main()
