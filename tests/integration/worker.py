"""Running real `apex-stream worker` processes for integration tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from apex_stream.settings import Settings


def worker_env(settings: Settings, port: int) -> dict[str, str]:
    """Environment for a worker on this test's topics, in this test's consumer group."""
    return os.environ | {
        "APEX_TOPIC_PREFIX": settings.topic_prefix,
        "APEX_APP_ID": f"apex-{settings.topic_prefix.rstrip('.')}",
        "APEX_WEB_PORT": str(port),
        "APEX_LOG_LEVEL": "WARNING",
    }


def get(port: int, path: str) -> Any:
    """GET a worker's JSON view."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


def post(port: int, path: str, body: bytes) -> tuple[int, Any]:
    """POST to a worker; returns status and JSON body (also for 4xx)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextmanager
def running_worker(settings: Settings, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process, ready (its web server answers); stopped with SIGTERM afterwards."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apex_stream.cli", "worker"],
            env=worker_env(settings, port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                get(port, "/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "worker did not start"
                time.sleep(0.5)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def collect(settings: Settings, topic: str, want: int, timeout: float) -> list[Any]:
    """Raw messages of a topic, from the beginning, until ``want`` arrived or ``timeout``."""
    consumer = AIOKafkaConsumer(
        settings.topic_name(topic),
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
    )
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
