"""Running real `apex-stream worker` processes for integration tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from apex_stream.client import kafka_consumer
from apex_stream.settings import Settings
from tests.support.processes import running_command


def worker_env(settings: Settings, port: int) -> dict[str, str]:
    """Environment for a worker on this test's topics, in this test's consumer group."""
    return {
        "APEX_TOPIC_PREFIX": settings.topic_prefix,
        "APEX_APP_ID": f"apex-{settings.topic_prefix.rstrip('.')}",
        "APEX_WEB_PORT": str(port),
        "APEX_LOG_LEVEL": "WARNING",
    }


def get(port: int, path: str) -> Any:
    """GET a worker's JSON view."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


def metrics(port: int) -> dict[str, float]:
    """A worker's Prometheus samples by name and labels: ``apex_outcomes_total{joined="yes"}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        families = text_string_to_metric_families(response.read().decode())
    return {
        sample.name
        + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sample.labels.items()) + "}"
            if sample.labels
            else ""
        ): sample.value
        for family in families
        for sample in family.samples
    }


def post(port: int, path: str, body: bytes) -> tuple[int, Any]:
    """POST to a worker; returns status and JSON body (also for 4xx)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def running_worker(
    settings: Settings, port: int, log: Path, env: dict[str, str] | None = None
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A worker process (``env`` added to :func:`worker_env`), ready (it holds partitions and
    has recovered its tables); stopped with SIGTERM afterwards."""

    def ready() -> bool:
        health = get(port, "/health")
        return bool(health["assigned"]) and health["recovered"]

    return running_command("worker", worker_env(settings, port) | (env or {}), log, ready, 90)


async def collect(settings: Settings, topic: str, want: int, timeout: float) -> list[Any]:
    """Raw messages of a topic, from the beginning, until ``want`` arrived or ``timeout``."""
    consumer = kafka_consumer(settings, settings.topic_name(topic), from_beginning=True)
    await consumer.start()
    messages: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(messages) < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            messages += [m for batch in batches.values() for m in batch]
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return messages
