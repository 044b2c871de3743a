"""The `apex-stream` command's shape (every command where users know it), the start of a time
window, and how a long-running command stops on a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from apex_stream.cli import main
from apex_stream.cli.common import parse_since
from apex_stream.cli.db import analytics
from apex_stream.sink.analytics import QUERIES

ROOT = Path(__file__).resolve().parents[2]


def _names(group: click.Group, prefix: str = "") -> set[str]:
    names = set()
    for name, command in group.commands.items():
        names.add(prefix + name)
        if isinstance(command, click.Group):
            names |= _names(command, f"{prefix}{name} ")
    return names


def test_every_command_keeps_its_name() -> None:
    assert _names(main) == {
        *("up", "down", "status", "worker", "sink", "bridge", "lifecycle", "demo"),
        *("produce", "consume", "analytics", "backtest"),
        *("topics", "topics create", "topics list", "topics describe"),
        *("db", "db upgrade", "db downgrade", "db current"),
        *("models", "models train", "models retrain", "models list", "models register"),
        *("models ab-test", "models promote", "models rollback", "models publish", "models show"),
    }


def test_analytics_offers_exactly_the_queries() -> None:
    assert list(analytics.params[0].type.choices) == list(QUERIES)


def test_since_takes_a_span_back_from_now_or_an_iso_time() -> None:
    start = parse_since("30m")
    ago = datetime.now(UTC) - start
    assert timedelta(minutes=30) <= ago < timedelta(minutes=30, seconds=5)
    assert parse_since("2026-01-02T03:04") == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    with pytest.raises(click.BadParameter, match="30m / 6h / 7d"):
        parse_since("30s")


SERVICE = """
import asyncio
from apex_stream.cli.run import run_until_signal

async def service(stop):
    print("ready", flush=True)
    try:
        await (stop or asyncio.Event()).wait()
        print("stopped", flush=True)
    except asyncio.CancelledError:
        print("cancelled", flush=True)
        raise

stop = asyncio.Event() if {handed} else None
run_until_signal(lambda: service(stop), stop)
print("exited", flush=True)
"""


@pytest.mark.parametrize(
    ("sig", "handed", "ending"),
    [(signal.SIGTERM, False, "cancelled"), (signal.SIGINT, True, "stopped")],
)
def test_a_signal_ends_a_service_cleanly(sig: signal.Signals, handed: bool, ending: str) -> None:
    """Without a stop event the service is cancelled; with one it ends by itself."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVICE.format(handed=handed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, f"{ending}\nexited\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--from", str(ROOT / "examples" / "history.csv"), "--from-db"],
            "give --from or --from-db, not both",
        ),
        (["--since", "6h"], "--since and --until select stored history: add --from-db"),
        (["--from", str(ROOT / "pyproject.toml")], "a history file is .csv or .parquet"),
        (
            ["--from", str(ROOT / "examples" / "history.csv"), "--opportunities", "5000"],
            "--opportunities sizes the simulated history: drop it with yours",
        ),
        (
            ["--from-db", "--opportunities", "5000"],
            "--opportunities sizes the simulated history: drop it with yours",
        ),
    ],
)
def test_models_train_says_what_is_wrong_with_its_source(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["models", "train", *args], env={"COLUMNS": "1000"})
    assert result.exit_code in (1, 2)
    assert message in result.output


def test_backtest_takes_seeds_and_the_users_history() -> None:
    from apex_stream.cli.backtest import backtest

    options = {o.name: o for o in backtest.params}
    assert options["seeds"].default == "2027,2028,2029"
    assert options["history_path"].opts == ["--history"]
    context = click.Context(backtest)
    assert options["seeds"].process_value(context, "2027, 2031") == (2027, 2031)
    assert options["seeds"].process_value(context, "") == ()
    with pytest.raises(click.BadParameter, match="2027,2028,2029"):
        options["seeds"].process_value(context, "2027;2028")
