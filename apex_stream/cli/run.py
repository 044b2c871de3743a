"""The long-running commands: the services (worker, sink, bridge, lifecycle), the demo, and the
simulated market in and a topic out (produce, consume)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click

from ..client import kafka_consumer
from ..events import EVENT_FOR_TOPIC
from ..settings import Settings, get_settings
from .common import console


def configure_logging(settings: Settings) -> None:
    """The services' one logging set-up: stderr at APEX_LOG_LEVEL."""
    logging.basicConfig(level=settings.log_level)


def run_until_signal(
    service: Callable[[], Coroutine[Any, Any, None]], stop: asyncio.Event | None = None
) -> None:
    """Run a long-lived service until SIGINT or SIGTERM, which end it cleanly (exit code 0).

    A service handed ``stop`` watches it and ends by itself (the sink finishes and commits what
    it holds); any other is cancelled.
    """

    async def run() -> None:
        task = asyncio.create_task(service())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel if stop is None else stop.set)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())


@click.command()
def worker() -> None:
    """Run a stream worker (several workers in one group split the partitions)."""
    from .. import worker as worker_module

    settings = get_settings()
    configure_logging(settings)
    sys.argv = [sys.argv[0], "worker"]  # Faust's own command line: no further arguments
    worker_module.run(settings)  # Faust handles the signals itself


@click.command()
def sink() -> None:
    """Write the event topics to the database (run `apex-stream db upgrade` first);
    Prometheus metrics on APEX_SINK_METRICS_PORT."""
    from ..sink.agent import Sink
    from ..sink.metrics import serve

    settings = get_settings()
    configure_logging(settings)
    stop = asyncio.Event()

    async def run() -> None:
        sink = Sink(settings)
        serve(sink, settings.sink_metrics_port)
        await sink.run(stop)

    run_until_signal(run, stop)


@click.command()
def bridge() -> None:
    """Relay the topics to websocket clients and serve the live dashboard."""
    from ..bridge.server import Bridge

    settings = get_settings()
    configure_logging(settings)
    run_until_signal(lambda: Bridge(settings).run())


@click.command()
def lifecycle() -> None:
    """Decide A/B tests and retrain on schedule or drift (run one per deployment)."""
    from ..lifecycle.controller import Controller

    settings = get_settings()
    configure_logging(settings)
    run_until_signal(lambda: Controller(settings, console).run())


@click.command()
@click.option("--rate", default=500.0, show_default=True, help="Opportunities per second.")
@click.option("--duration", type=float, help="Stop after this many seconds (default: Ctrl-C).")
@click.option("--seed", default=0, show_default=True)
def demo(rate: float, duration: float | None, seed: int) -> None:
    """The main job: local services, topics, a worker and the simulated market, live."""
    from ..demo import run_demo

    run_until_signal(
        lambda: run_demo(get_settings(), rate=rate, duration=duration, seed=seed, console=console)
    )
    console.print("\nstopped; `apex-stream down` stops the local services")


@click.command()
@click.option(
    "--rate",
    default=1000.0,
    show_default=True,
    help="Opportunities per second; 0 sends as fast as possible.",
)
@click.option("--count", type=int, help="Stop after this many opportunities.")
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option(
    "--outcomes/--no-outcomes",
    default=True,
    show_default=True,
    help="Also write execution outcomes (drawn from the hidden ground truth).",
)
@click.option("--seed", default=0, show_default=True)
def produce(
    rate: float, count: int | None, duration: float | None, outcomes: bool, seed: int
) -> None:
    """Write the simulated market (prices, opportunities, outcomes) to Kafka."""
    from ..produce import produce_market

    try:
        sent = asyncio.run(
            produce_market(
                get_settings(),
                rate=rate,
                count=count,
                duration=duration,
                outcomes=outcomes,
                seed=seed,
            )
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    console.print(", ".join(f"{n:,} {t}" for t, n in sorted(sent.items())))


@click.command()
@click.argument("topic", type=click.Choice(sorted(EVENT_FOR_TOPIC)))
@click.option("--from-beginning", is_flag=True, help="Start at the oldest retained message.")
@click.option("--count", type=int, help="Exit after this many messages.")
@click.option("--meta", is_flag=True, help="Wrap each value with partition, offset and key.")
def consume(topic: str, from_beginning: bool, count: int | None, meta: bool) -> None:
    """Tail a topic as JSON lines (no consumer group, nothing committed)."""
    import msgspec

    settings = get_settings()

    async def run() -> None:
        seen = 0
        async with kafka_consumer(
            settings, settings.topic_name(topic), from_beginning=from_beginning
        ) as consumer:
            async for msg in consumer:
                try:
                    value = msgspec.json.decode(msg.value)
                except msgspec.DecodeError:
                    value = msg.value.decode(errors="backslashreplace")
                if meta:
                    value = {
                        "partition": msg.partition,
                        "offset": msg.offset,
                        "key": msg.key.decode(errors="backslashreplace") if msg.key else None,
                        "timestamp_ms": msg.timestamp,
                        "value": value,
                    }
                sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
                sys.stdout.flush()
                seen += 1
                if count is not None and seen >= count:
                    break

    run_until_signal(run)
