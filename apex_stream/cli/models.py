"""`apex-stream models`: versions in the models/ manifest, and telling the workers about them."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ..settings import get_settings
from .common import console, parse_since

if TYPE_CHECKING:
    from ..inference.registry import ModelEntry, Registry

#: Opportunities ``models train`` simulates when it trains on the simulator.
SIMULATED = 200_000


@click.group()
def models() -> None:
    """Model versions in the models/ manifest."""


@models.command("train")
@click.option("--version", default="1.0.0", show_default=True, help="Semantic version to write.")
@click.option(
    "--seed",
    default=11,
    show_default=True,
    help="Seed of the models' training, and of the simulated history.",
)
@click.option(
    "--opportunities",
    type=int,
    help=f"Simulated opportunities (default {SIMULATED:,}); not with --from or --from-db.",
)
@click.option(
    "--engine-only", is_flag=True, help="Train only the engine model; the members stay as they are."
)
@click.option(
    "--from",
    "history",
    type=click.Path(exists=True, path_type=Path),
    help="Train on your history: a CSV or Parquet file, or a folder (README: Training on your "
    "own data) instead of the simulator.",
)
@click.option(
    "--from-db", is_flag=True, help="Train on the history the sink stored (DATABASE_URL)."
)
@click.option("--since", help="With --from-db: opportunities since (ISO time or 30m / 6h / 7d).")
@click.option("--until", help="With --from-db: opportunities before (ISO time or 30m / 6h / 7d).")
def models_train(
    version: str,
    seed: int,
    opportunities: int | None,
    engine_only: bool,
    history: Path | None,
    from_db: bool,
    since: str | None,
    until: str | None,
) -> None:
    """Train the XGBoost, ONNX and online members (and stacking), and the engine model behind
    seed 002's /predict, on simulated history, or on yours (--from, --from-db)."""
    from ..training.train import train_baseline, train_simulated

    if history and from_db:
        raise click.UsageError("give --from or --from-db, not both")
    if (since or until) and not from_db:
        raise click.UsageError("--since and --until select stored history: add --from-db")
    if opportunities is not None and (history or from_db):
        raise click.UsageError("--opportunities sizes the simulated history: drop it with yours")
    settings = get_settings()
    if history is None and not from_db:
        entries = train_simulated(
            settings.models_dir,
            version=version,
            seed=seed,
            opportunities=SIMULATED if opportunities is None else opportunities,
            console=console,
            engine_only=engine_only,
        )
        _print_models(entries)
        return
    from ..training import history as user_history

    if history is not None:
        data = user_history.read_history(history, console=console)
        source = f"file {history.name}"
    else:
        from sqlalchemy import create_engine
        from sqlalchemy.exc import ArgumentError

        try:
            engine = create_engine(settings.db_url)
        except ArgumentError as exc:
            raise user_history.HistoryError(f"DATABASE_URL is not a database URL: {exc}") from None
        try:
            data = user_history.load_database(
                engine,
                since=parse_since(since) if since else None,
                until=parse_since(until) if until else None,
                console=console,
            )
        finally:
            engine.dispose()
        source = "database"
    entries = train_baseline(
        settings.models_dir,
        data,
        version=version,
        seed=seed,
        console=console,
        engine_only=engine_only,
        source=source,
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
    active ones on the newest outcomes; those not worse enter an A/B test, the others are kept
    as rejected."""
    from sqlalchemy import create_engine

    from ..training.retrain import retrain

    settings = get_settings()
    engine = create_engine(settings.db_url)
    result = retrain(
        engine,
        settings.models_dir,
        since=parse_since(since) if since else datetime.fromtimestamp(0, UTC),
        window=window or settings.retrain_window,
        min_rows=min_rows,
        candidate_traffic=traffic or settings.retrain_candidate_traffic,
        threshold=settings.threshold,
        auc_margin=settings.retrain_auc_margin,
        logloss_margin=settings.retrain_logloss_margin,
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
    _print_models(result.candidates + ([result.stacking] if result.stacking else []))
    _publish(_registry(), f"retrained {result.version}")


@models.command("list")
def models_list() -> None:
    """Every registered version with its status and test metrics."""
    _print_models(_registry().entries())


@models.command("register")
@click.argument("name")
@click.argument("version")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--feature-version", help="Feature list the model was trained on (default: the model's own)."
)
@click.option("--metrics", "metrics_json", help='Training metrics as JSON: {"test_auc": 0.84}.')
def models_register(
    name: str, version: str, file: Path, feature_version: str | None, metrics_json: str | None
) -> None:
    """Add a model file as a candidate version (no traffic until `models ab-test`, or
    `models promote` for the online learner and the engine)."""
    registry = _registry()
    entry = registry.register(
        name,
        version,
        file,
        feature_version=feature_version,
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
    weights: dict[str, float] = {}
    for part in split:
        version, _, weight = part.partition("=")
        try:
            weights[version] = float(weight)
        except ValueError:
            raise click.BadParameter(f"{part!r}: write VERSION=WEIGHT, e.g. 1.1.0=0.2") from None
    registry = _registry()
    _print_models(registry.split(name, weights))
    _publish(registry, f"A/B test of {name}: " + ", ".join(split))


@models.command("promote")
@click.argument("name")
@click.argument("version")
def models_promote(name: str, version: str) -> None:
    """Make VERSION the active one with all traffic (the previous active is archived)."""
    registry = _registry()
    _print_models([registry.promote(name, version)])
    _publish(registry, f"promoted {name}@{version}")


@models.command("rollback")
@click.argument("name")
def models_rollback(name: str) -> None:
    """Stop a running test (the active version takes all traffic), or with none running,
    bring back the previous version."""
    registry = _registry()
    entry = registry.rollback(name)
    _print_models([entry])
    _publish(registry, f"rolled {name} back to {entry.version}")


@models.command("publish")
def models_publish() -> None:
    """Send the current manifest to the running workers again (they apply it when it is
    newer than the revision they serve)."""
    _publish(_registry(), "published by hand")


@models.command("show")
@click.argument("key", metavar="NAME@VERSION")
def models_show(key: str) -> None:
    """Everything the manifest holds about one version."""
    from dataclasses import asdict

    name, _, version = key.partition("@")
    entry = asdict(_registry().get(name, version))
    if "impute" in entry["params"]:
        entry["params"]["impute"] = f"{len(entry['params']['impute'])} feature means"
    console.print_json(data=entry)


def _registry() -> Registry:
    """The registry over the models folder (APEX_MODELS_DIR), the one every command here edits."""
    from ..inference.registry import Registry

    return Registry(get_settings().models_dir)


def _publish(registry: Registry, reason: str) -> None:
    """Tell the running workers about the manifest just written (live reload)."""
    from ..inference.control import publish

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
    """Each version with its test figures; against the hidden truth where it was known (the
    share of its AUC, the expected-profit gate's net profit as a share of the oracle's)."""
    table = Table(
        "model",
        "type",
        "status",
        "traffic",
        "features",
        "test AUC",
        "of truth's",
        "test logloss",
        "test ECE",
        "EP gate / oracle",
        "created",
    )
    for e in entries:
        table.add_row(
            e.key,
            e.type,
            e.status,
            f"{e.traffic:.0%}",
            e.feature_version,
            _test_metric(e, "auc", ".4f"),
            _test_metric(e, "auc_share_of_truth", ".3f"),
            _test_metric(e, "logloss", ".4f"),
            _test_metric(e, "ece", ".4f"),
            _test_metric(e, "expected_profit_gate_share_of_oracle", ".1%"),
            e.created,
        )
    console.print(table)


def _test_metric(entry: ModelEntry, name: str, spec: str) -> str:
    value = entry.metrics.get(f"test_{name}", math.nan)
    return "n/a" if math.isnan(value) else format(value, spec)
