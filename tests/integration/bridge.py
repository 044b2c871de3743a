"""Running a real `apex-stream bridge` process and talking to it, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from apex_stream.settings import Settings


@contextmanager
def running_bridge(
    settings: Settings, port: int, log: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A bridge on this test's topics, relaying (its /health says ok); stopped afterwards."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apex_stream.cli", "bridge"],
            env=os.environ
            | {
                "APEX_TOPIC_PREFIX": settings.topic_prefix,
                "APEX_BRIDGE_PORT": str(port),
                "APEX_LOG_LEVEL": "WARNING",
            }
            | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if json.loads(r.read())["status"] == "ok":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "bridge did not start"
            time.sleep(0.3)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def receive(ws: ClientConnection, timeout: float = 10) -> list[dict[str, Any]]:
    """The messages of the next frame (a control object or an array of envelopes)."""
    import asyncio

    message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message if isinstance(message, list) else [message]
