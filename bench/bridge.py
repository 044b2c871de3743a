"""Load test of the websocket bridge on loopback.

    python -m bench.bridge            # ~2 minutes; writes bench/bridge.json, bench/bridge.md
    python -m bench.bridge --report   # rewrite bench/bridge.md from bench/bridge.json

Needs the local broker (`apex-stream up`) and py-spy for the profile. BENCH_CLIENTS,
BENCH_CLIENT_PROCS, BENCH_RATES, BENCH_GOAL_RATE, BENCH_SECONDS, BENCH_STALL_SECONDS and
BENCH_CLIENT_QUEUE (the bridge's APEX_BRIDGE_CLIENT_QUEUE, 2,000 so that the stalled client
reaches it within the run) change the run; other APEX_BRIDGE_* settings pass to the bridge.

One bridge process (`python -m apex_stream.cli bridge`, fresh topics) and BENCH_CLIENTS
websocket clients subscribed to `predictions`, spread over BENCH_CLIENT_PROCS processes (so
they do not share the bridge's event loop). Prediction events are produced to Kafka at fixed
rates; for each rate, over BENCH_SECONDS after a warm-up:
  - deliveries/s: relayed messages received by all clients per second;
  - delivery lag: client receive time minus the envelope's `ts` (the Kafka record timestamp,
    stamped by the producer at send time), per message, p50/p95/p99 across all clients;
  - CPU of the bridge, the client processes and the broker, and the bridge's RSS.
Then the stalled-client run: the goal rate again plus one client that subscribes and never
reads (a raw socket, websocket handshake by hand, small SO_RCVBUF): the others' lag, the
bridge's RSS every second and its `dropped` count. Last, py-spy samples the bridge at the
goal rate (a separate run, so the profiler's pauses do not skew the figures above).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import re
import resource
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
import uuid
from array import array
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from bench.harness.procstat import cpu_ticks, machine_ticks, processes, rss_mb
from bench.harness.pyspy import stacks

if TYPE_CHECKING:
    from apex_stream.settings import Settings

HERE = Path(__file__).parent
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "1000"))
PROCS = int(os.environ.get("BENCH_CLIENT_PROCS", "2"))
RATES = tuple(int(x) for x in os.environ.get("BENCH_RATES", "100,300,500").split(","))
GOAL_RATE = int(os.environ.get("BENCH_GOAL_RATE", "300"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
STALL_SECONDS = float(os.environ.get("BENCH_STALL_SECONDS", "40"))
WARMUP = 3.0
QUEUE = int(os.environ.get("BENCH_CLIENT_QUEUE", "2000"))  # APEX_BRIDGE_CLIENT_QUEUE
SUBSCRIBE = b'{"type":"subscribe","channels":["predictions"]}'


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- client processes ---------------------------------------------------------------------------


class Envelope(msgspec.Struct):
    ts: int


class Control(msgspec.Struct):
    type: str
    dropped: int = 0


class Recorder:
    """Per process: Kafka timestamps of the envelopes received, and each frame's arrival."""

    def __init__(self) -> None:
        self.on = False
        self.started = 0.0
        self.stamps = array("q")
        self.arrivals = array("d")
        self.counts = array("q")
        self.bytes = 0
        self.dropped: dict[int, int] = {}
        self.closed = 0

    async def listen(self, i: int, ws: Any) -> None:
        envelopes = msgspec.json.Decoder(list[Envelope])
        controls = msgspec.json.Decoder(Control)
        try:
            while True:
                frame = await ws.recv(decode=False)
                if frame[:1] != b"[":
                    c = controls.decode(frame)
                    if c.type == "heartbeat":
                        self.dropped[i] = c.dropped
                    continue
                if self.on:
                    batch = envelopes.decode(frame)
                    self.arrivals.append(time.time() * 1e3)
                    self.counts.append(len(batch))
                    self.stamps.extend([e.ts for e in batch])
                    self.bytes += len(frame)
        except Exception:  # noqa: BLE001 - closed: counted, the others go on
            self.closed += 1

    def stop(self, path: str) -> dict[str, Any]:
        self.on = False
        elapsed = time.monotonic() - self.started
        arrivals = np.repeat(np.frombuffer(self.arrivals, dtype=np.float64), self.counts)
        lag = (arrivals - np.frombuffer(self.stamps, dtype=np.int64)).astype(np.float32)
        np.save(path, lag)
        summary = {
            "received": len(lag),
            "frames": len(self.counts),
            "bytes": self.bytes,
            "elapsed_s": elapsed,
            "dropped": sum(self.dropped.values()),
            "closed": self.closed,
        }
        self.stamps, self.arrivals, self.counts = array("q"), array("d"), array("q")
        self.bytes = 0
        return summary


async def clients(port: int, n: int) -> None:
    """Open ``n`` subscribed connections, say `ready`, then follow start/stop on stdin."""
    from websockets.asyncio.client import connect

    raise_nofile()
    rec = Recorder()
    gate = asyncio.Semaphore(50)
    tasks: list[asyncio.Task[None]] = []

    async def open_one(i: int) -> None:
        async with gate:
            ws = await connect(
                f"ws://127.0.0.1:{port}/ws",
                compression=None,
                proxy=None,
                max_size=None,
                ping_interval=None,
                open_timeout=120,
            )
            await ws.send(SUBSCRIBE, text=True)
            while b'"subscribed"' not in await ws.recv(decode=False):
                pass
            tasks.append(asyncio.create_task(rec.listen(i, ws)))

    await asyncio.gather(*(open_one(i) for i in range(n)))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "start":
            rec.on, rec.started = True, time.monotonic()
        elif line[0] == "stop":
            print(json.dumps(rec.stop(line[1])), flush=True)


# -- the bridge process, the broker and the machine --------------------------------------------


def unsent_bytes(port: int, peer: int) -> int:
    """Bytes the kernel holds in the bridge's socket to ``peer`` (tx_queue of /proc/net/tcp)."""
    local, remote = f"0100007F:{port:04X}", f"0100007F:{peer:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == local and f[2] == remote:
            return int(f[4].split(":")[0], 16)
    return 0


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read()


def metric(text: bytes, name: str) -> float:
    found = re.search(rb"^" + name.encode() + rb" (\S+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def relay_buckets(text: bytes) -> dict[float, float]:
    """Cumulative buckets of apex_bridge_relay_lag_seconds (Kafka time to fan-out)."""
    found = re.findall(rb'apex_bridge_relay_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    return {float(le): float(v) for le, v in found}


def stalled_client(port: int) -> socket.socket:
    """A websocket client that subscribes and then never reads (handshake by hand)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    s.sendall(request.encode())
    seen = b""
    while b"\r\n\r\n" not in seen:
        seen += s.recv(4096)
    assert b" 101 " in seen.split(b"\r\n", 1)[0], seen
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(SUBSCRIBE))
    s.sendall(bytes([0x81, 0x80 | len(SUBSCRIBE)]) + mask + masked)  # a client frame is masked
    while b'"subscribed"' not in seen:
        seen += s.recv(4096)
    return s


def percentiles(ms: np.ndarray) -> dict[str, float | None]:
    if not len(ms):
        return dict.fromkeys(("p50", "p95", "p99", "max"))
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        k: round(float(v), 1)
        for k, v in zip(("p50", "p95", "p99", "max"), (p50, p95, p99, ms.max()), strict=True)
    }


# -- the run ------------------------------------------------------------------------------------


class Bench:
    """The bridge process, the client processes, the producer and a plain Kafka observer."""

    def __init__(self, settings: Settings, port: int, bridge: int, procs: list[Any]) -> None:
        self.settings, self.port, self.bridge, self.procs = settings, port, bridge, procs
        self.kafka = next(iter(processes(b"kafka.Kafka")), None)
        self.tmp = Path(tempfile.mkdtemp(prefix="bridgebench"))
        self.phase = "connect"
        self.t0 = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self.observing = False
        self.kafka_lags = array("d")
        self.sent = 0  # by the running producer

    async def health(self) -> dict[str, Any]:
        return json.loads(await asyncio.to_thread(get, self.port, "/health"))

    async def sample(self) -> None:
        """The bridge's RSS, clients, dropped (/health and /metrics) and queued, every second."""
        while True:
            h = await self.health()
            m = await asyncio.to_thread(get, self.port, "/metrics")
            self.samples.append(
                {
                    "t_s": round(time.monotonic() - self.t0, 1),
                    "phase": self.phase,
                    "rss_mb": round(rss_mb(self.bridge), 1),
                    "clients": h["clients"],
                    "dropped": h["dropped"],
                    "metrics_dropped": metric(m, "apex_bridge_dropped_total"),
                    "queued": metric(m, "apex_bridge_queued_messages"),
                }
            )
            await asyncio.sleep(1)

    async def observe(self) -> None:
        """Kafka alone: receive time minus record time in a plain consumer of the same topic."""
        from apex_stream.client import kafka_consumer

        consumer = kafka_consumer(self.settings, self.settings.topic_name("predictions"))
        await consumer.start()
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    if self.observing:
                        now = time.time() * 1e3
                        self.kafka_lags.extend([now - r.timestamp for r in records])
        finally:
            await consumer.stop()

    async def snapshot(self) -> dict[str, Any]:
        return {
            "at": time.monotonic(),
            "sent": self.sent,
            "bridge": cpu_ticks(self.bridge),
            "clients": sum(cpu_ticks(p.pid) for p in self.procs),
            "kafka": cpu_ticks(self.kafka) if self.kafka else 0,
            "bench": cpu_ticks(os.getpid()),
            "machine": machine_ticks(),
            "health": await self.health(),
            "relay": relay_buckets(await asyncio.to_thread(get, self.port, "/metrics")),
        }

    async def command(self, line: str) -> list[dict[str, Any]]:
        for i, p in enumerate(self.procs):
            p.stdin.write(line.format(i=i).encode() + b"\n")
            await p.stdin.drain()
        return (
            [json.loads(await p.stdout.readline()) for p in self.procs] if line != "start" else []
        )

    async def produce(self, producer: Any, rate: int, stop: asyncio.Event) -> int:
        """Valid predictions at ``rate``/s until ``stop``; the producer stamps each record."""
        from apex_stream.events import Prediction
        from apex_stream.inference.members import MEMBERS

        sent, t0 = 0, time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - t0) * rate) + 1
            now = time.time()
            for i in range(sent, due):
                await producer.send(
                    Prediction(
                        opportunity_id=f"opp-{i}",
                        route_id=f"route-{i % 50}",
                        chain="ethereum",
                        score=0.6,
                        decision=True,
                        threshold=0.5,
                        strategy="weighted",
                        model_scores={m: 0.6 for m in MEMBERS},
                        model_versions={m: "1.0.0" for m in MEMBERS},
                        latency_ms=4.0,
                        opportunity_timestamp=now - 0.01,
                        timestamp=now,
                        recommendation="EXECUTE",
                        confidence=0.6,
                    )
                )
            sent = self.sent = due
            await asyncio.sleep(0.002)
        await producer.flush()
        return sent

    async def drain(self) -> dict[str, Any]:
        """Until the bridge has handed out everything relayed (its counts stand still)."""
        last, deadline = None, time.monotonic() + 30
        while True:
            h = await self.health()
            now = (h["delivered"], h["dropped"], h["relayed"]["predictions"])
            if now == last or time.monotonic() > deadline:
                return h
            last = now
            await asyncio.sleep(1)

    async def run(
        self, producer: Any, name: str, rate: int, seconds: float, *, stall: bool = False
    ) -> dict[str, Any]:
        """Produce at ``rate``/s; after the warm-up, measure for ``seconds``."""
        print(f"{name}: {rate}/s for {WARMUP:g} + {seconds:g} s", flush=True)
        self.phase = name
        start = await self.health()
        stalled = await asyncio.to_thread(stalled_client, self.port) if stall else None
        stop = asyncio.Event()
        production = asyncio.create_task(self.produce(producer, rate, stop))
        await asyncio.sleep(WARMUP)
        spy = await self.profiler(seconds) if name == "profile" else None
        before = await self.snapshot()
        self.observing, self.kafka_lags = True, array("d")
        await self.command("start")
        await asyncio.sleep(seconds)
        parts = await self.command(f"stop {self.tmp}/{name}-{{i}}.npy")
        self.observing = False
        after = await self.snapshot()
        stop.set()
        sent = await production
        if spy is not None:
            await spy.wait()
        extra: dict[str, Any] = {}
        if stalled is not None:
            extra["stalled_still_connected"] = after["health"]["clients"] > CLIENTS
            extra["stalled_kernel_bytes"] = unsent_bytes(self.port, stalled.getsockname()[1])
            stalled.close()
        end = await self.drain()
        lag = np.concatenate([np.load(self.tmp / f"{name}-{i}.npy") for i in range(PROCS)])
        result = figures(name, rate, sent, parts, lag, before, after)
        result["kafka_lag_ms"] = percentiles(np.frombuffer(self.kafka_lags))
        result["rss_mb_max"] = max(s["rss_mb"] for s in self.samples if s["phase"] == name)
        if stalled is not None:
            relayed = end["relayed"]["predictions"] - start["relayed"]["predictions"]
            extra["stalled_handed_to_pump"] = (
                end["delivered"] - start["delivered"] - CLIENTS * relayed
            )
            extra["stalled_dropped"] = end["dropped"] - start["dropped"]
            extra["stalled_offered"] = relayed
            result |= extra
        print(f"  {json.dumps(result)}", flush=True)
        return result

    async def profiler(self, seconds: float) -> Any:
        return await asyncio.create_subprocess_exec(
            *("py-spy", "record", "--pid", str(self.bridge), "--duration", str(int(seconds))),
            *("--rate", "100", "--format", "raw", "--output", str(HERE / "bridge-profile.txt")),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )


def figures(
    name: str,
    rate: int,
    sent: int,
    parts: list[dict[str, Any]],
    lag: np.ndarray,
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    elapsed = after["at"] - before["at"]
    hz = os.sysconf("SC_CLK_TCK")
    keys = ("bridge", "clients", "kafka", "bench")
    cpu = {k: round(100 * (after[k] - before[k]) / hz / elapsed, 1) for k in keys}
    busy, total = (a - b for a, b in zip(after["machine"], before["machine"], strict=True))
    cpu["machine"] = round(100 * (os.cpu_count() or 1) * busy / total, 1)
    cpu["others"] = round(cpu["machine"] - sum(cpu[k] for k in keys), 1)
    received = sum(p["received"] for p in parts)
    frames = sum(p["frames"] for p in parts)
    window = max(p["elapsed_s"] for p in parts)
    relay = {le: v - before["relay"].get(le, 0.0) for le, v in after["relay"].items()}
    return {
        "phase": name,
        "rate_offered": rate,
        "produced": sent,
        "deliveries_per_s": round(received / window),
        "deliveries_expected_per_s": round((after["sent"] - before["sent"]) / elapsed * CLIENTS),
        "frames_per_s": round(frames / window),
        "messages_per_frame": round(received / max(1, frames), 2),
        "bytes_per_message": round(sum(p["bytes"] for p in parts) / max(1, received)),
        "lag_ms": percentiles(lag),
        "relay_within_50ms": round(relay.get(0.05, 0.0) / max(relay.get(float("inf"), 0), 1), 4),
        "cpu_pct": cpu,
        "dropped": after["health"]["dropped"] - before["health"]["dropped"],
        "dropped_seen_by_clients": sum(p["dropped"] for p in parts),
        "clients_closed": sum(p["closed"] for p in parts),
    }


def top_functions(raw: Path, n: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of py-spy's samples per function (line numbers dropped)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in stacks(raw):
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    ours = re.compile(r"apex_stream/bridge|bridge/|websockets/|aiokafka/")
    return {
        "samples": total,
        "self": [(f, round(c / total, 4)) for f, c in own.most_common(n)],
        "inclusive": [
            (f, round(c / total, 4)) for f, c in inclusive.most_common() if ours.search(f)
        ][:n],
    }


async def main() -> None:
    from apex_stream.client import EventProducer
    from apex_stream.settings import Settings
    from bench.harness.processes import free_port, start_bridge, stop_process
    from bench.harness.topics import create_topics, drop_topics

    raise_nofile()
    settings = Settings(topic_prefix=f"wsbench{uuid.uuid4().hex[:6]}.")
    await create_topics(settings)
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="bridgebench")) / "bridge.log"
    r: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; Kafka, the bridge, the producer and the client "
        "processes share it",
        "command": "python -m bench.bridge",
        "clients": CLIENTS,
        "client_processes": PROCS,
        "cores": os.cpu_count(),
        "bridge_env": {k: v for k, v in os.environ.items() if k.startswith("APEX_BRIDGE_")}
        | {"APEX_BRIDGE_CLIENT_QUEUE": str(QUEUE)},
        "seconds": SECONDS,
        "stall_seconds": STALL_SECONDS,
        "warmup_s": WARMUP,
    }
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            bridge = start_bridge(settings, port, log, {"APEX_BRIDGE_CLIENT_QUEUE": str(QUEUE)})
            stack.callback(stop_process, bridge)
            print(f"bridge {bridge.pid} on port {port}; log {log}", flush=True)
            per = [CLIENTS // PROCS + (i < CLIENTS % PROCS) for i in range(PROCS)]
            procs = [
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "bench.bridge", "--clients", str(port), str(n)),
                    cwd=HERE.parent,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                for n in per
            ]
            for p in procs:
                assert (await asyncio.wait_for(p.stdout.readline(), 180)).strip() == b"ready"
            r["connect_s"] = round(time.monotonic() - started, 1)
            print(f"{CLIENTS} clients subscribed in {r['connect_s']} s", flush=True)
            bench = Bench(settings, port, bridge.pid, procs)
            tasks = [asyncio.create_task(bench.sample()), asyncio.create_task(bench.observe())]
            async with EventProducer(settings, linger_ms=1) as producer:
                # the goal rate last, right before the stalled-client run it is compared with
                order = sorted(RATES, key=lambda rate: rate == GOAL_RATE)
                runs = {
                    rate: await bench.run(producer, f"rate-{rate}", rate, SECONDS) for rate in order
                }
                r["rates"] = [runs[rate] for rate in RATES]
                r["stalled"] = await bench.run(
                    producer, "stalled", GOAL_RATE, STALL_SECONDS, stall=True
                )
                if shutil.which("py-spy"):
                    r["profiled"] = await bench.run(producer, "profile", GOAL_RATE, SECONDS)
                    r["profile"] = top_functions(HERE / "bridge-profile.txt")
            for task in tasks:
                task.cancel()
            r["samples"] = bench.samples
            for p in procs:
                p.stdin.close()
                await p.wait()
    finally:
        await drop_topics(settings)
    r["run_s"] = round(time.monotonic() - started)
    (HERE / "bridge.json").write_text(json.dumps(r, indent=1) + "\n")
    report(r)


def report(r: dict[str, Any]) -> None:
    """bench/bridge.md: the figures of one run."""
    goal = next(x for x in r["rates"] if x["rate_offered"] == GOAL_RATE)
    stalled = r["stalled"]

    def row(label: str, x: dict[str, Any]) -> str:
        lag, cpu = x["lag_ms"], x["cpu_pct"]
        return (
            f"| {label} | {x['deliveries_per_s']:,} ({x['deliveries_expected_per_s']:,}) | "
            f"{x['messages_per_frame']:.1f} | {lag['p50']:.0f} | {lag['p95']:.0f} | "
            f"{lag['p99']:.0f} | {lag['max']:.0f} | {x['kafka_lag_ms']['p99']:.0f} | "
            f"{cpu['bridge']:.0f}% | {1e4 * cpu['bridge'] / max(1, x['frames_per_s']):.0f} µs | "
            f"{cpu['clients']:.0f}% | {cpu['kafka']:.0f}% | {cpu['machine']:.0f}% "
            f"({cpu['others']:.0f}%) | {x['rss_mb_max']:.0f} MB |"
        )

    env = " ".join(f"{k}={v}" for k, v in r["bridge_env"].items())
    lines = [
        "## Websocket bridge load test",
        "",
        f"Measured by `{r['command']}` ({r['run_s']} s) on {r['machine']}. "
        f"{r['clients']:,} clients (`websockets` asyncio client, {r['client_processes']} "
        f"processes) subscribe to `predictions`; valid predictions are produced to Kafka at a "
        f"fixed rate; each rate runs {r['warmup_s']:g} s of warm-up, then {r['seconds']:g} s "
        f"measured. Bridge: `{env}`, otherwise the defaults.",
        "",
        "Deliveries/s: messages received by all clients per second (in brackets: messages "
        "produced per second in the same window times the clients). Lag: client receive "
        "time minus the envelope's `ts` (the Kafka record time, stamped by the producer when "
        "sent), per message, across all clients; "
        "*Kafka alone*: the same for a plain aiokafka consumer of the topic. CPU in % of one "
        "core; *per frame*: bridge CPU time per websocket frame sent; *machine*: all "
        "processes (in brackets, those not part of the run).",
        "",
        "| offered | deliveries/s | msgs/frame | p50 ms | p95 ms | p99 ms | max ms | "
        "Kafka alone p99 ms | bridge CPU | per frame | clients CPU | Kafka CPU | machine "
        "(others) | bridge RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(row(f"{x['rate_offered']:,}/s", x) for x in r["rates"]),
        row(f"{GOAL_RATE:,}/s + stalled client", stalled),
    ]
    if "profiled" in r:
        lines.append(row(f"{GOAL_RATE:,}/s under py-spy", r["profiled"]))
    ratio = stalled["lag_ms"]["p99"] / goal["lag_ms"]["p99"]
    held = stalled["stalled_kernel_bytes"] / stalled["bytes_per_message"]
    series = [x for x in r["samples"] if x["phase"] == "stalled"]
    last = max((i for i, x in enumerate(series) if x["clients"] > r["clients"]), default=0)
    shown = {x["t_s"]: x for x in [*series[: last + 1 : 4], *series[last : last + 2]]}.values()
    first_drop = next((x["t_s"] - series[0]["t_s"] for x in series if x["dropped"]), None)
    rss = [x["rss_mb"] for x in r["samples"]]
    lines += [
        "",
        f"Goal at {GOAL_RATE}/s (>= {GOAL_RATE * r['clients']:,} deliveries/s, p99 <= 50 ms): "
        f"**{goal['deliveries_per_s']:,} deliveries/s** (of {goal['deliveries_expected_per_s']:,} "
        f"produced x clients in the window; {goal['dropped']:,} dropped), **p99 "
        f"{goal['lag_ms']['p99']:.0f} ms**.",
        "",
        "### Stalled client",
        "",
        f"One more client subscribes and never reads (raw socket, handshake by hand, "
        f"SO_RCVBUF 4 KiB) for {stalled['stalled_offered']:,} messages ({r['stall_seconds']:g} s "
        f"measured): the others' p99 lag is **{stalled['lag_ms']['p99']:.0f} ms against "
        f"{goal['lag_ms']['p99']:.0f} ms without it ({ratio:.2f}x; acceptance <= 2x)**. "
        f"The bridge handed {stalled['stalled_handed_to_pump']:,} messages to its pump "
        f"(counted as delivered); at the end the kernel still held "
        f"{stalled['stalled_kernel_bytes'] / 1e6:.1f} MB of them in the socket "
        f"(~{held:,.0f} messages); drops from its {QUEUE:,}-message queue "
        + (f"began {first_drop:.0f} s in" if first_drop is not None else "never began")
        + f", {stalled['stalled_dropped']:,} oldest messages in all "
        f"(/health `dropped`, /metrics `apex_bridge_dropped_total`); "
        f"{'still connected' if stalled['stalled_still_connected'] else 'disconnected'} "
        f"at the end. Bridge RSS over the whole run: {min(rss):.0f}-{max(rss):.0f} MB.",
        "",
        "| t (s) | bridge RSS (MB) | queued (all clients) | dropped: /health | /metrics |",
        "|---|---|---|---|---|",
        *(
            f"| {x['t_s'] - series[0]['t_s']:.0f} | {x['rss_mb']:.1f} | {x['queued']:,.0f} | "
            f"{x['dropped']:,} | {x['metrics_dropped']:,.0f} |"
            for x in shown
        ),
    ]
    low = r["rates"][0]
    per_frame = 1e4 * goal["cpu_pct"]["bridge"] / max(1, goal["frames_per_s"])
    lines += [
        "",
        "### What limits the lag",
        "",
        f"Kafka alone delivers with a p99 of {goal['kafka_lag_ms']['p99']:.0f} ms at "
        f"{GOAL_RATE}/s; the rest is the fan-out. The bridge writes about one frame per client "
        f"per relay cycle, at {per_frame:.0f} µs of its CPU per frame, so a cycle over "
        f"{r['clients']:,} clients takes ~{per_frame * r['clients'] / 1e3:.0f} ms; even at "
        f"{low['rate_offered']}/s ({low['messages_per_frame']:.1f} messages per frame) the p50 "
        f"is {low['lag_ms']['p50']:.0f} ms. The {r['clients']:,} clients use "
        f"{goal['cpu_pct']['clients']:.0f}% of a core themselves and the machine is saturated "
        f"({goal['cpu_pct']['machine']:.0f}% of {100 * r['cores']}%), so bridge, "
        "clients and broker also wait for a CPU.",
    ]
    if "profile" in r:
        prof = r["profile"]
        lines += [
            "",
            f"### Where the bridge's time goes ({GOAL_RATE}/s, py-spy, "
            f"{prof['samples']:,} samples, `bench/bridge-profile.txt`)",
            "",
            "| function (self) | share | function (inclusive) | share |",
            "|---|---|---|---|",
            *(
                f"| `{a}` | {sa:.1%} | `{b}` | {sb:.1%} |"
                for (a, sa), (b, sb) in zip(prof["self"], prof["inclusive"], strict=False)
            ),
        ]
    (HERE / "bridge.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--clients"]:
        asyncio.run(clients(int(sys.argv[2]), int(sys.argv[3])))
    elif sys.argv[1:] == ["--report"]:
        report(json.loads((HERE / "bridge.json").read_text()))
    else:
        asyncio.run(main())
