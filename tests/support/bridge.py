"""Running a real `apex-stream bridge` process and talking to it, for integration tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from apex_stream.settings import Settings
from tests.support.processes import running_command


def running_bridge(
    settings: Settings, port: int, log: Path, **env: str
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A bridge on this test's topics, relaying (its /health says ok); stopped afterwards."""

    def relaying() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())["status"] == "ok"

    bridge_env = {
        "APEX_TOPIC_PREFIX": settings.topic_prefix,
        "APEX_BRIDGE_PORT": str(port),
        "APEX_LOG_LEVEL": "WARNING",
    }
    return running_command("bridge", bridge_env | env, log, relaying, 60)


async def receive(ws: ClientConnection, timeout: float = 10) -> list[dict[str, Any]]:
    """The messages of the next frame (a control object or an array of envelopes)."""
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message if isinstance(message, list) else [message]
