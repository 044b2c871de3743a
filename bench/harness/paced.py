"""One worker offered the real traffic mix at a steady rate, on a step's own topics; latency
is what a consumer of `predictions` sees (bench/harness/traffic.py)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from apex_stream.settings import Settings

from .processes import free_port, start_worker, stop_process
from .procstat import cpu_ticks
from .topics import create_topics, drop_topics
from .traffic import Arrivals, Sender, Traffic

HZ = os.sysconf("SC_CLK_TCK")


def fresh() -> Settings:
    """A step's own topics."""
    settings = Settings(topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    asyncio.run(create_topics(settings))
    return settings


def drop(settings: Settings) -> None:
    """Delete a step's topics (its own and its workers' changelogs): the broker stays lean."""
    asyncio.run(drop_topics(settings))


def paced(
    rate: float,
    seconds: float,
    log: Path,
    env: dict[str, str] | None = None,
    during: Callable[[int], AbstractContextManager[Any]] | None = None,
) -> dict[str, Any]:
    """``seconds`` of the mix offered at ``rate`` to one worker; latency of every prediction
    (the first ``seconds / 6`` are warm-up and left out). ``during(port)`` is entered while the
    mix is sent, with the worker's HTTP port (load beside the stream)."""
    traffic = Traffic.simulate(rate, seconds + seconds / 6)
    settings = fresh()
    sender = Sender(settings)
    port = free_port()
    proc = start_worker(settings, log, (env or {}) | {"APEX_WEB_PORT": str(port)})
    arrivals = Arrivals(settings, sender)
    ticks = cpu_ticks(proc.pid)
    try:
        with (during or (lambda _: nullcontext()))(port):
            t0 = time.time()
            sender.paced(traffic, rate)
            sent_for = time.time() - t0
        cores = (cpu_ticks(proc.pid) - ticks) / HZ / sent_for
        complete = arrivals.wait(traffic.opportunities, 60)
        behind = time.time() - t0 - sent_for
        latency = arrivals.latency_ms()
        numbers = np.array(sorted(set(arrivals.numbers)))
    finally:
        stop_process(proc)
        arrivals.stop()
        drop(settings)
    measured = latency[numbers >= np.quantile(numbers, 1 / 7)] if len(latency) else latency
    p50, p95, p99, top = np.percentile(measured, [50, 95, 99, 100]).tolist()
    return {
        "offered_per_s": traffic.opportunities / sent_for,
        "opportunities": traffic.opportunities,
        "complete": bool(complete),
        "last_prediction_after_last_send_s": behind,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "max_ms": top,
        "worker_cores": cores,
    }
