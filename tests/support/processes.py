"""Real `apex-stream` subcommands in their own processes, for integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness.processes import stop_process


@contextmanager
def running_command(
    command: str, env: dict[str, str], log: Path, ready: Callable[[], bool], timeout: float
) -> Iterator[subprocess.Popen[bytes]]:
    """`apex-stream COMMAND` with ``env`` added, once ``ready()`` says so (an ``OSError`` from
    it counts as not yet); stopped with SIGTERM afterwards (killed if it lingers)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apex_stream.cli", command],
            env=os.environ | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if ready():
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (
                f"`apex-stream {command}` not ready in {timeout} s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.3)
        yield proc
    finally:
        stop_process(proc)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`apex-stream ARGS` to its end with exactly ``env``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "apex_stream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
