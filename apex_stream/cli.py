"""The `apex-stream` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

from . import services
from .errors import ApexStreamError
from .events import EVENT_FOR_TOPIC
from .settings import get_settings
from .topics import TopicAdmin

if TYPE_CHECKING:
    from .inference.registry import ModelEntry, Registry

console = Console()


class Group(click.Group):
    """Turns apex-stream's own errors into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ApexStreamError as exc:
            console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
            sys.exit(1)


@click.group(cls=Group)
def main() -> None:
    """apex-stream: real-time ML scoring of arbitrage opportunities on Kafka."""


def _print_services(rows: list[services.ServiceStatus], verb: str) -> None:
    for row in rows:
        state = "up" if row.up else "down"
        note = verb if row.changed else f"already {state}"
        owner = "managed" if row.managed else "external"
        console.print(f"{row.name:9} {row.address:24} {state:5} ({owner}, {note})")


@main.command()
def up() -> None:
    """Start the local Kafka broker and PostgreSQL (unless configured to external ones)."""
    settings = get_settings()
    rows = services.up(settings)
    _print_services(rows, "started")
    if not rows:
        console.print("KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL are set: nothing to start")


@main.command()
def down() -> None:
    """Stop the local services that `up` started."""
    _print_services(services.down(get_settings()), "stopped")


@main.command()
def status() -> None:
    """Show whether Kafka and PostgreSQL answer."""
    rows = services.status(get_settings())
    _print_services(rows, "")
    if not all(r.up for r in rows):
        sys.exit(3)


@main.group()
def topics() -> None:
    """The topics declared in topics/."""


@topics.command("create")
def topics_create() -> None:
    """Create the declared topics that are missing and report drift in the others."""

    async def run() -> int:
        async with TopicAdmin(get_settings()) as admin:
            created = await admin.create()
            states = await admin.describe()
        for name in created:
            console.print(f"created {name}")
        drifted = [s for s in states if s.drift]
        for state in drifted:
            console.print(f"[yellow]drift[/yellow] {state.broker_name}: {'; '.join(state.drift)}")
        console.print(
            f"{len(states)} topics declared, {len(created)} created, {len(drifted)} drifted"
        )
        return 2 if drifted else 0

    sys.exit(asyncio.run(run()))


@topics.command("list")
def topics_list() -> None:
    """List the declared topics and whether they exist."""

    async def run() -> None:
        async with TopicAdmin(get_settings()) as admin:
            states = await admin.describe()
        table = Table("topic", "partitions", "key", "exists", "drift")
        for s in states:
            table.add_row(
                s.broker_name,
                str(s.spec.partitions),
                s.spec.key,
                "yes" if s.exists else "no",
                "; ".join(s.drift) or "-",
            )
        console.print(table)

    asyncio.run(run())


@topics.command("describe")
@click.argument("name")
def topics_describe(name: str) -> None:
    """Show one topic's declaration, broker state and value schema."""

    async def run() -> None:
        async with TopicAdmin(get_settings()) as admin:
            states = {s.spec.name: s for s in await admin.describe()}
        if name not in states:
            raise click.BadParameter(f"unknown topic {name!r}; one of {', '.join(states)}")
        s = states[name]
        console.print(f"[bold]{s.broker_name}[/bold]: {s.spec.description}")
        console.print(
            f"partitions {s.spec.partitions} declared, {s.partitions} on broker; "
            f"key {s.spec.key}; config {s.spec.config}"
        )
        console.print(f"drift: {'; '.join(s.drift) or 'none'}")
        console.print_json(json.dumps(s.spec.value_schema))

    asyncio.run(run())


@main.command()
def worker() -> None:
    """Run a stream worker (several workers in one group split the partitions)."""
    from . import worker as worker_module

    sys.argv = [sys.argv[0], "worker"]  # Faust's own command line: no further arguments
    worker_module.run(get_settings())


@main.group()
def db() -> None:
    """The database schema (Alembic migrations in migrations/)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    from .sink import migrations

    migrations.upgrade(get_settings().db_url, revision)
    _print_revision()


@db.command("downgrade")
@click.argument("revision", default="-1")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (default: one step; `base` removes everything)."""
    from .sink import migrations

    migrations.downgrade(get_settings().db_url, revision)
    _print_revision()


@db.command("current")
def db_current() -> None:
    """Show the database's revision and storage (timescaledb or postgresql)."""
    _print_revision()


def _print_revision() -> None:
    from .sink import migrations

    revision, storage = migrations.current(get_settings().db_url)
    console.print(f"revision {revision or 'none (empty database)'}; storage {storage or '-'}")


@main.command()
def bridge() -> None:
    """Relay the topics to websocket clients and serve the live dashboard."""
    import logging

    from .bridge.server import Bridge

    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    _run_until_signal(lambda: Bridge(settings).run())


def _run_until_signal(service: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a long-lived service; SIGINT or SIGTERM cancels it cleanly."""
    import signal

    async def run() -> None:
        task = asyncio.create_task(service())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())


@main.command()
def sink() -> None:
    """Write the event topics to the database (run `apex-stream db upgrade` first);
    Prometheus metrics on APEX_SINK_METRICS_PORT."""
    import logging
    import signal

    from .sink.agent import Sink
    from .sink.metrics import serve

    settings = get_settings()
    logging.basicConfig(level=settings.log_level)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sink = Sink(settings)
        serve(sink, settings.sink_metrics_port)
        await sink.run(stop)

    asyncio.run(run())


@main.command()
@click.argument(
    "name",
    type=click.Choice(
        ["predictions-per-minute", "outcomes-per-hour", "ab-comparison", "token-summary"]
    ),
)
@click.option(
    "--since",
    default="1h",
    show_default=True,
    help="Window start: an ISO time, or a duration back from now (30m, 6h, 7d).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def analytics(name: str, since: str, fmt: str) -> None:
    """Run one of the analytics queries (their SQL is in README.md)."""
    import csv

    from sqlalchemy import create_engine

    from .sink.analytics import run

    start = _since(since)
    engine = create_engine(get_settings().db_url)
    columns, rows = run(engine, name, start)
    engine.dispose()
    if fmt == "json":
        sys.stdout.write(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=1)
            + "\n"
        )
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns, title=f"{name} since {start:%Y-%m-%d %H:%M} UTC")
        for row in rows:
            table.add_row(*(f"{v:,.4g}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)


def _since(since: str) -> datetime:
    """An ISO time, or a span back from now: 30m, 6h, 7d."""
    from datetime import timedelta

    units = {"m": "minutes", "h": "hours", "d": "days"}
    if since[-1:] in units and since[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[since[-1]]: int(since[:-1])})
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise click.BadParameter(f"{since!r}: use an ISO time or 30m / 6h / 7d") from None
    return start if start.tzinfo else start.replace(tzinfo=UTC)


@main.command()
def lifecycle() -> None:
    """Decide A/B tests and retrain on schedule or drift (run one per deployment)."""
    import logging

    from .lifecycle.controller import Controller

    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    _run_until_signal(lambda: Controller(settings, console).run())


@main.group()
def models() -> None:
    """Model versions in the models/ manifest."""


@models.command("train")
@click.option("--version", default="1.0.0", show_default=True, help="Semantic version to write.")
@click.option("--seed", default=11, show_default=True, help="Simulator seed of the history.")
@click.option(
    "--opportunities", default=200_000, show_default=True, help="Simulated opportunities."
)
def models_train(version: str, seed: int, opportunities: int) -> None:
    """Train the XGBoost, ONNX and online members (and stacking) on simulated history."""
    from .training.train import train_baseline

    settings = get_settings()
    entries = train_baseline(
        settings.models_dir,
        version=version,
        seed=seed,
        opportunities=opportunities,
        console=console,
    )
    _print_models(entries)


@models.command("retrain")
@click.option("--since", help="Only outcomes predicted since (ISO time or 30m / 6h / 7d).")
@click.option("--window", type=int, help="Newest labelled predictions to train on.")
@click.option("--traffic", type=float, help="Share of routes the candidates get in the A/B test.")
@click.option("--min-rows", default=1_000, show_default=True, help="Refuse with fewer outcomes.")
def models_retrain(
    since: str | None, window: int | None, traffic: float | None, min_rows: int
) -> None:
    """New XGBoost and ONNX versions from stored predictions and outcomes, compared with the
    active ones on the newest outcomes and put into an A/B test."""
    from sqlalchemy import create_engine

    from .inference.registry import Registry
    from .training.retrain import retrain

    settings = get_settings()
    engine = create_engine(settings.db_url)
    result = retrain(
        engine,
        settings.models_dir,
        since=_since(since) if since else datetime.fromtimestamp(0, UTC),
        window=window or settings.retrain_window,
        min_rows=min_rows,
        candidate_traffic=traffic or settings.retrain_candidate_traffic,
        threshold=settings.threshold,
        console=console,
    )
    engine.dispose()
    table = Table("member", "held-out", "AUC", "log loss", "precision", "recall")
    for member, sides in result.comparison.items():
        for side, m in sides.items():
            table.add_row(
                member,
                side,
                *(f"{m[k]:.4f}" for k in ("auc", "logloss", "precision", "recall")),
            )
    console.print(table)
    _print_models(result.candidates)
    _publish(Registry(settings.models_dir), f"retrained {result.version}")


@models.command("list")
def models_list() -> None:
    """Every registered version with its status and test metrics."""
    from .inference.registry import Registry

    _print_models(Registry(get_settings().models_dir).entries())


@models.command("register")
@click.argument("name")
@click.argument("version")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--feature-version", help="Feature list the model was trained on (default: now).")
@click.option("--metrics", "metrics_json", help='Training metrics as JSON: {"test_auc": 0.84}.')
def models_register(
    name: str, version: str, file: Path, feature_version: str | None, metrics_json: str | None
) -> None:
    """Add a model file as a candidate version (no traffic until `models ab-test`)."""
    from .features import FEATURE_VERSION
    from .inference.registry import Registry

    registry = Registry(get_settings().models_dir)
    entry = registry.register(
        name,
        version,
        file,
        feature_version=feature_version or FEATURE_VERSION,
        metrics=json.loads(metrics_json) if metrics_json else None,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    _print_models([entry])
    _publish(registry, f"registered {entry.key}")


@models.command("ab-test")
@click.argument("name")
@click.argument("split", nargs=-1, required=True)
def models_ab_test(name: str, split: tuple[str, ...]) -> None:
    """Split traffic between versions: `models ab-test xgboost 1.0.0=0.8 1.1.0=0.2`."""
    from .inference.registry import Registry

    weights: dict[str, float] = {}
    for part in split:
        version, _, weight = part.partition("=")
        try:
            weights[version] = float(weight)
        except ValueError:
            raise click.BadParameter(f"{part!r}: write VERSION=WEIGHT, e.g. 1.1.0=0.2") from None
    registry = Registry(get_settings().models_dir)
    _print_models(registry.split(name, weights))
    _publish(registry, f"A/B test of {name}: " + ", ".join(split))


@models.command("promote")
@click.argument("name")
@click.argument("version")
def models_promote(name: str, version: str) -> None:
    """Make VERSION the active one with all traffic (the previous active is archived)."""
    from .inference.registry import Registry

    registry = Registry(get_settings().models_dir)
    _print_models([registry.promote(name, version)])
    _publish(registry, f"promoted {name}@{version}")


@models.command("rollback")
@click.argument("name")
def models_rollback(name: str) -> None:
    """Stop a running test (the active version takes all traffic), or with none running,
    bring back the previous version."""
    from .inference.registry import Registry

    registry = Registry(get_settings().models_dir)
    entry = registry.rollback(name)
    _print_models([entry])
    _publish(registry, f"rolled {name} back to {entry.version}")


@models.command("publish")
def models_publish() -> None:
    """Send the current manifest to the running workers again (they apply it when it is
    newer than the revision they serve)."""
    from .inference.registry import Registry

    _publish(Registry(get_settings().models_dir), "published by hand")


@models.command("show")
@click.argument("key", metavar="NAME@VERSION")
def models_show(key: str) -> None:
    """Everything the manifest holds about one version."""
    from dataclasses import asdict

    from .inference.registry import Registry

    name, _, version = key.partition("@")
    entry = asdict(Registry(get_settings().models_dir).get(name, version))
    if "impute" in entry["params"]:
        entry["params"]["impute"] = f"{len(entry['params']['impute'])} feature means"
    console.print_json(data=entry)


def _publish(registry: Registry, reason: str) -> None:
    """Tell the running workers about the manifest just written (live reload)."""
    from .inference.control import publish

    manifest = registry.manifest()
    try:
        asyncio.run(publish(get_settings(), manifest, reason))
    except Exception as exc:  # noqa: BLE001 - the manifest is written either way
        console.print(
            f"[yellow]manifest revision {manifest.revision} written, but workers were not told "
            f"({type(exc).__name__}: {exc}); they load it when they start, or run "
            "`apex-stream models publish` once the broker is back[/yellow]"
        )
        return
    console.print(f"manifest revision {manifest.revision} published to the workers")


def _print_models(entries: list[ModelEntry]) -> None:
    table = Table(
        "model", "type", "status", "traffic", "features", "test AUC", "test logloss", "created"
    )
    for e in entries:
        table.add_row(
            e.key,
            e.type,
            e.status,
            f"{e.traffic:.0%}",
            e.feature_version,
            f"{e.metrics.get('test_auc', float('nan')):.4f}",
            f"{e.metrics.get('test_logloss', float('nan')):.4f}",
            e.created,
        )
    console.print(table)


@main.command()
@click.option(
    "--seed",
    default=2027,
    show_default=True,
    help="Simulator seed of the history (never a training segment's seed).",
)
@click.option(
    "--opportunities",
    type=click.IntRange(min=10_000),
    default=600_000,
    show_default=True,
    help="Simulated opportunities (200 per simulated second).",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Baseline: execute what the scanner proposes with confidence_score >= this.",
)
@click.option(
    "--period",
    type=click.FloatRange(min=0.0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds of simulated time per Sharpe period.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="bench/backtest",
    show_default=True,
    help="Folder for report.md and equity.png.",
)
def backtest(seed: int, opportunities: int, min_confidence: float, period: float, out: str) -> None:
    """Replay simulated history through the active ensemble: ML gate vs scanner confidence."""
    import shlex
    from pathlib import Path

    from .lifecycle.backtest import run_backtest

    command = shlex.join(
        [
            "apex-stream",
            "backtest",
            *("--seed", str(seed), "--opportunities", str(opportunities)),
            *("--min-confidence", f"{min_confidence:g}", "--period", f"{period:g}"),
            *("--out", out),
        ]
    )
    result = run_backtest(
        get_settings(),
        seed=seed,
        opportunities=opportunities,
        min_confidence=min_confidence,
        period=period,
        out=Path(out),
        command=command,
        console=console,
    )
    table = Table(
        "strategy", "trades", "win rate", "net profit (USD)", "Sharpe", "max drawdown (USD)"
    )
    for s in result.strategies:
        table.add_row(
            s.name,
            f"{s.trades:,}",
            f"{s.win_rate:.1%}",
            f"{s.net_profit_usd:,.2f}",
            f"{s.sharpe:.3f}",
            f"{s.max_drawdown_usd:,.2f}",
        )
    console.print(table)
    console.print(f"wrote {Path(out) / 'report.md'} and {Path(out) / 'equity.png'}")


@main.command()
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
    from .produce import produce_market

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


@main.command()
@click.option("--rate", default=500.0, show_default=True, help="Opportunities per second.")
@click.option("--duration", type=float, help="Stop after this many seconds (default: Ctrl-C).")
@click.option("--seed", default=0, show_default=True)
def demo(rate: float, duration: float | None, seed: int) -> None:
    """The main job: local services, topics, a worker and the simulated market, live."""
    from .demo import run_demo

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_demo(get_settings(), rate=rate, duration=duration, seed=seed, console=console)
        )
    console.print("\nstopped; `apex-stream down` stops the local services")


@main.command()
@click.argument("topic", type=click.Choice(sorted(EVENT_FOR_TOPIC)))
@click.option("--from-beginning", is_flag=True, help="Start at the oldest retained message.")
@click.option("--count", type=int, help="Exit after this many messages.")
@click.option("--meta", is_flag=True, help="Wrap each value with partition, offset and key.")
def consume(topic: str, from_beginning: bool, count: int | None, meta: bool) -> None:
    """Tail a topic as JSON lines (no consumer group, nothing committed)."""
    import msgspec

    settings = get_settings()

    async def run() -> None:
        consumer = AIOKafkaConsumer(
            settings.topic_name(topic),
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
        )
        await consumer.start()
        seen = 0
        try:
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
        finally:
            await consumer.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
