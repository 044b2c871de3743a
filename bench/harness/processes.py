"""apex-stream processes of a benchmark run: a worker, a sink, a bridge, each on the run's
topics, started once ready and stopped afterwards with :func:`stop_process`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from apex_stream.settings import Settings


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port: int) -> dict:
    """A process's /health view."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
        return json.loads(r.read())


def start_worker(
    settings: Settings, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """An `apex-stream worker` (or BENCH_WORKER's command) on the run's topics, ``env`` added
    (its APEX_WEB_PORT, if any, is the worker's port), once it holds partitions and has
    recovered its tables."""
    port = int((env or {}).get("APEX_WEB_PORT") or free_port())
    proc = subprocess.Popen(
        [sys.executable, *os.environ.get("BENCH_WORKER", "-m apex_stream.cli worker").split()],
        env=os.environ
        | {
            "APEX_TOPIC_PREFIX": settings.topic_prefix,
            "APEX_APP_ID": f"bench-{settings.topic_prefix.rstrip('.')}",
            "APEX_WEB_PORT": str(port),
            "APEX_LOG_LEVEL": "WARNING",
        }
        | (env or {}),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        view = health(port)
        return view["recovered"] and any("opportunities" in a for a in view["assigned"])

    return _once_ready(proc, ready, 120, f"worker did not start; see {log}")


def start_sink(settings: Settings, url: str, log: Path) -> subprocess.Popen[bytes]:
    """``apex-stream sink`` as a process of its own on ``settings``' topics and ``url``."""
    env = os.environ | {
        "APEX_TOPIC_PREFIX": settings.topic_prefix,
        "APEX_APP_ID": settings.app_id,
        "APEX_LOG_LEVEL": "WARNING",
        "APEX_SINK_METRICS_PORT": "0",  # several may run at once
        "DATABASE_URL": url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "apex_stream.cli", "sink"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def start_bridge(
    settings: Settings, port: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``apex-stream bridge`` on the run's topics and ``port``, ``env`` added, once relaying."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "apex_stream.cli", "bridge"],
        env=os.environ
        | {
            "APEX_TOPIC_PREFIX": settings.topic_prefix,
            "APEX_BRIDGE_PORT": str(port),
            "APEX_LOG_LEVEL": "WARNING",
        }
        | (env or {}),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return _once_ready(
        proc, lambda: health(port)["status"] == "ok", 60, f"bridge did not start; see {log}"
    )


def _once_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float, failed: str
) -> subprocess.Popen[bytes]:
    """``proc`` once ``ready()`` says so (an ``OSError`` from it counts as not yet); stopped,
    and ``failed`` raised, if it ends or is not ready within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(failed)
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
