"""CPU and memory of processes and of the machine, from /proc (Linux), for the benchmarks."""

from __future__ import annotations

import os
import platform
import re
from contextlib import suppress
from pathlib import Path


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks() -> tuple[int, int]:
    """(busy, total) ticks of all CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def processes(*needles: bytes) -> list[int]:
    """Processes whose command line holds any of ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                cmdline = (entry / "cmdline").read_bytes()
                if any(n in cmdline for n in needles):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def total_ticks(pids: list[int]) -> int:
    ticks = 0
    for pid in pids:
        with suppress(OSError):  # ended meanwhile
            ticks += cpu_ticks(pid)
    return ticks


class Cpu:
    """CPU ticks of the sink processes, of the PostgreSQL processes serving them (their
    database's backends and the WAL writer, checkpointer and background writer) and of the
    broker."""

    def __init__(self, sinks: list[int], database: str) -> None:
        self.sinks, self.database = sinks, database.rsplit("/", 1)[1].encode()

    def sample(self) -> dict[str, int]:
        busy, _ = machine_ticks()
        postgres = processes(
            b"postgres: apex " + self.database,
            b"postgres: walwriter",
            b"postgres: checkpointer",
            b"postgres: background writer",
        )
        return {
            "sink": total_ticks(self.sinks),
            "postgres": total_ticks(postgres),
            "kafka": total_ticks(processes(b"kafka.Kafka")),
            "machine": busy,
        }


def cores(first: dict[str, int], last: dict[str, int], seconds: float) -> dict[str, float]:
    """Cores each part used between two samples."""
    hz = os.sysconf("SC_CLK_TCK")
    return {k: round((last[k] - first[k]) / hz / seconds, 2) for k in first}


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
