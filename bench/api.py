"""The scoring API beside the stream, on the real traffic mix.

    python -m bench.api            # ~4 minutes; writes bench/api.json and bench/api.md
    python -m bench.api --report   # rewrite bench/api.md from bench/api.json

One worker is offered what `apex-stream produce --rate RATE` sends (price ticks, opportunities,
one outcome per opportunity) for SECONDS, twice on fresh topics: alone, then while a client
posts seed 000 batch requests of ROWS opportunities to `/predict/batch`, one after another, for
the whole run, from a process of its own. Stream latency is what a consumer of `predictions`
sees (the API's answers go to the client, not to the topic); the API's figures are each
request's round trip at the client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness.paced import paced
from bench.harness.procstat import machine
from bench.harness.traffic import OPPORTUNITIES, Traffic

HERE = Path(__file__).parent
LOG = HERE / ".worker.log"
RATE = float(os.environ.get("BENCH_RATE", "1000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
ROWS = int(os.environ.get("BENCH_ROWS", "10000"))


def batch_body(rows: int) -> bytes:
    """Seed 000's request body with ``rows`` simulated opportunities at its threshold."""
    traffic = Traffic.simulate(1000.0, rows / 1000.0 + 5, seed=7)
    values = [v for v, t in zip(traffic.values, traffic.topic, strict=True) if t == OPPORTUNITIES]
    return b'{"opportunities":[' + b",".join(values[:rows]) + b'],"threshold":0.8}'


def post_until_stopped(port: int, rows: int) -> None:
    """The client (a process of its own, so that parsing answers takes no time from the load
    generator): post back to back until SIGTERM, one JSON line per request on stdout."""
    body = batch_body(rows)
    url = f"http://127.0.0.1:{port}/predict/batch"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        started = time.perf_counter()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        trip = {
            "round_trip_ms": (time.perf_counter() - started) * 1e3,
            "score_ms": answer["timing"]["score_ms"],
            "rows": answer["total_opportunities"],
            "bytes": len(body),
        }
        print(json.dumps(trip), flush=True)


def posting(requests: list[dict[str, float]]) -> Callable[[int], AbstractContextManager[None]]:
    """While its block runs, a client process posts ROWS-opportunity batches back to back."""

    @contextmanager
    def during(port: int) -> Iterator[None]:
        client = subprocess.Popen(
            [sys.executable, "-m", "bench.api", "--post", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            yield
        finally:
            client.terminate()
            out, _ = client.communicate(timeout=180)
            requests.extend(json.loads(line) for line in out.splitlines())

    return during


def main() -> None:
    results: dict[str, Any] = {"machine": machine(), "rate": RATE, "seconds": SECONDS}
    results["stream_alone"] = paced(RATE, SECONDS, LOG)
    requests: list[dict[str, float]] = []
    results["stream_with_api"] = paced(RATE, SECONDS, LOG, during=posting(requests))
    trips = np.array([r["round_trip_ms"] for r in requests])
    scored = np.array([r["score_ms"] for r in requests])
    rows = sum(r["rows"] for r in requests)
    results["api"] = {
        "rows_per_request": ROWS,
        "request_bytes": requests[0]["bytes"],
        "requests": len(requests),
        "round_trip_p50_ms": float(np.percentile(trips, 50)),
        "round_trip_p99_ms": float(np.percentile(trips, 99)),
        "score_p50_ms": float(np.percentile(scored, 50)),
        "rows_per_s": rows / (trips.sum() / 1e3),
    }
    (HERE / "api.json").write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(r: dict[str, Any]) -> None:
    alone, loaded, api = r["stream_alone"], r["stream_with_api"], r["api"]
    lines = [
        "# The scoring API beside the stream",
        "",
        f"`python -m bench.api` on {r['machine']}; the mix at {r['rate']:g} opportunities/s "
        f"for {r['seconds']:g} s (plus warm-up), once alone and once while a client posts seed "
        f"000 batch requests of {api['rows_per_request']:,} opportunities "
        f"({api['request_bytes'] / 1e6:.1f} MB) to `/predict/batch` back to back.",
        "",
        "| stream | offered/s | p50 ms | p95 ms | p99 ms | max ms | worker cores |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in (("alone", alone), ("with API requests", loaded)):
        lines.append(
            f"| {name} | {s['offered_per_s']:,.0f} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} "
            f"| {s['p99_ms']:.1f} | {s['max_ms']:.0f} | {s['worker_cores']:.2f} |"
        )
    lines += [
        "",
        f"API: {api['requests']} requests; round trip p50 {api['round_trip_p50_ms']:.0f} ms, "
        f"p99 {api['round_trip_p99_ms']:.0f} ms (scoring {api['score_p50_ms']:.0f} ms of it at "
        f"the median); {api['rows_per_s']:,.0f} opportunities/s scored through the API.",
        "",
    ]
    (HERE / "api.md").write_text("\n".join(lines))


if __name__ == "__main__":
    if "--post" in sys.argv:
        post_until_stopped(int(sys.argv[sys.argv.index("--post") + 1]), ROWS)
    elif "--report" in sys.argv:
        report(json.loads((HERE / "api.json").read_text()))
    else:
        main()
