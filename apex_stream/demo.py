"""`apex-stream demo`: local services, topics, a worker, the sink, the lifecycle controller, the
websocket bridge, the simulated market and live figures.

The demo serves a fresh copy of models/ (in the cache folder), so versions the controller
retrains never land in the checkout.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import deque
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from . import services
from .client import PredictionConsumer
from .events import Prediction
from .produce import produce_market
from .settings import Settings
from .sink import migrations
from .stream.source import skip_backlog
from .topics import TopicAdmin

COMMANDS = ("worker", "sink", "lifecycle", "bridge")


class Figures:
    """Rolling figures over the predictions topic, as a consumer of it sees them."""

    def __init__(self, window: int = 20_000) -> None:
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.arrivals: deque[float] = deque(maxlen=window)
        self.total = 0
        self.executed = 0

    def add(self, prediction: Prediction) -> None:
        """Latency: from the opportunity's produce time (its record time, which the worker's
        ``latency_ms`` counts from) to this prediction's arrival here."""
        now = time.time()
        produced = prediction.timestamp - prediction.latency_ms / 1e3
        self.latency_ms.append((now - produced) * 1e3)
        self.arrivals.append(now)
        self.total += 1
        self.executed += prediction.decision

    def rate(self, seconds: float = 5.0) -> float:
        horizon = time.time() - seconds
        return sum(1 for t in self.arrivals if t >= horizon) / seconds


def _worker_json(settings: Settings, path: str) -> dict[str, Any]:
    token = settings.api_token
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.web_port}{path}",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            figures: dict[str, Any] = json.loads(response.read())
            return figures
    except OSError:
        return {}


def _known(value: Any, spec: str) -> str:
    """``value`` formatted, or "–" while it is not known yet (None or NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, spec)


def _scoring(settings: Settings) -> bool:
    """The worker has recovered its tables and its batch path holds opportunities partitions
    (the market starts only then: it would otherwise open the run with a queue)."""
    health = _worker_json(settings, "/health")
    topic = settings.topic_name("opportunities") + ":"
    return bool(health.get("recovered")) and any(
        a.startswith(topic) for a in health.get("assigned", [])
    )


def _view(figures: Figures, summary: dict[str, Any], started: float, settings: Settings) -> Group:
    head = Table.grid(padding=(0, 3))
    if figures.latency_ms:
        p50, p95, p99 = np.percentile(np.array(figures.latency_ms), [50, 95, 99]).tolist()
    else:
        p50 = p95 = p99 = None
    share = figures.executed / figures.total if figures.total else None
    head.add_row("predictions", f"{figures.total:,}", "rate (5 s)", f"{figures.rate():,.0f}/s")
    head.add_row(
        "latency p50/p95/p99 (produced to received)",
        " / ".join(_known(v, ".1f") for v in (p50, p95, p99)) + " ms",
        "execute share",
        _known(share, ".1%"),
    )
    head.add_row(
        "providers",
        ", ".join(f"{k}: {v}" for k, v in summary.get("providers", {}).items()),
        "running",
        f"{time.time() - started:,.0f} s",
    )
    models = Table(
        "model@version",
        "outcomes",
        "AUC",
        "accuracy",
        "precision",
        "recall",
        "realized profit (executed)",
        title="per model, from outcomes",
    )
    for key, perf in sorted(summary.get("performance", {}).items()):
        models.add_row(
            key,
            _known(perf.get("samples"), ","),
            _known(perf.get("auc"), ".3f"),
            _known(perf.get("accuracy"), ".3f"),
            _known(perf.get("precision"), ".3f"),
            _known(perf.get("recall"), ".3f"),
            "$" + _known(perf.get("realized_profit_usd"), ",.0f"),
        )
    footer = (
        f"worker API: http://127.0.0.1:{settings.web_port}/docs · /health · /models/summary · "
        f"dashboard: http://{settings.bridge_host}:{settings.bridge_port}/ · Ctrl-C stops"
    )
    return Group(head, models, footer)


async def _watch(settings: Settings, figures: Figures) -> None:
    async with PredictionConsumer(strict=True, settings=settings) as predictions:
        async for prediction in predictions:
            figures.add(prediction)


async def run_demo(
    settings: Settings, *, rate: float, duration: float | None, seed: int, console: Console
) -> None:
    """Run the whole system until ``duration`` passes or Ctrl-C."""
    # blocking (it waits until each service answers, with probes of its own): off the loop
    for row in await asyncio.to_thread(services.up, settings):
        console.print(f"{row.name} on {row.address} ({'started' if row.changed else 'up'})")
    async with TopicAdmin(settings) as admin:
        await admin.create()
    migrations.upgrade(settings.db_url, quiet=True)
    skipped = await skip_backlog(settings)
    if skipped:
        console.print(f"skipped {skipped:,} opportunities an earlier run left unscored (stale)")
    models = settings.home / "demo-models"
    shutil.rmtree(models, ignore_errors=True)
    shutil.copytree(settings.models_dir, models)
    procs = [_spawn(settings, c, console, {"APEX_MODELS_DIR": str(models)}) for c in COMMANDS]
    while not _scoring(settings):
        for command, proc in zip(COMMANDS, procs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"`apex-stream {command}` exited; see its log")
        await asyncio.sleep(0.5)
    console.print(
        f"[bold]dashboard: http://{settings.bridge_host}:{settings.bridge_port}/[/] "
        f"(websocket ws://{settings.bridge_host}:{settings.bridge_port}/ws)"
    )
    figures, started = Figures(), time.time()
    tasks = [
        asyncio.create_task(_watch(settings, figures)),
        asyncio.create_task(
            produce_market(
                settings,
                rate=rate,
                count=None,
                duration=duration or 1e9,
                outcomes=True,
                seed=seed,
                quiet=True,
            )
        ),
    ]
    try:
        with Live(console=console, refresh_per_second=2) as live:
            while not tasks[1].done():
                # urllib blocks: off the loop that consumes the predictions being timed
                summary = await asyncio.to_thread(_worker_json, settings, "/models/summary")
                live.update(_view(figures, summary, started, settings))
                await asyncio.sleep(1.0)
            await tasks[1]
            await asyncio.sleep(2.0)  # the last predictions
            live.update(
                _view(
                    figures,
                    _worker_json(settings, "/models/summary"),
                    started,
                    settings,
                )
            )
    finally:
        for task in tasks:
            task.cancel()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)


def _spawn(
    settings: Settings, command: str, console: Console, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """An `apex-stream` subcommand in its own process, logging to the cache folder."""
    log = settings.home / f"demo-{command}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "apex_stream.cli", command],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=os.environ | {"APEX_LOG_LEVEL": "WARNING"} | env,
    )
    console.print(f"{command} pid {proc.pid} (log: {log})")
    return proc
