"""`apex-stream models retrain`: new XGBoost and ONNX versions from what the pipeline stored.

The training set is every stored prediction with a known outcome, with the features the worker
computed when it scored the opportunity (``predictions.features``), newest ``window`` rows
(optionally only those predicted after ``since``, e.g. a detected drift). It is split
chronologically: 70 % trains, 15 % early-stops, and the last 15 % (the most recent outcomes,
never seen in training) compares the new versions with the active ones. The new versions are
registered as candidates and an A/B test starts with ``candidate_traffic`` of the routes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from sqlalchemy import Engine, text

from ..errors import ApexStreamError
from ..features import FEATURE_VERSION, FEATURES, impute
from ..inference.ensemble import load_member, training_means
from ..inference.members import SPECS, SPLITTABLE
from ..inference.registry import Manifest, ModelEntry, Registry, now_iso
from .dataset import Dataset
from .metrics import classification_metrics
from .mlp import train_mlp
from .xgb import train_xgboost

SPLIT = (0.70, 0.85)

HISTORY_SQL = text(
    """SELECT p.features, o.success, o.realized_profit_usd, extract(epoch FROM p.time) AS t
       FROM predictions p JOIN outcomes o USING (opportunity_id)
       WHERE p.feature_version = :feature_version AND p.features IS NOT NULL
         AND p.predicted_at >= :since
       ORDER BY p.time DESC LIMIT :window"""
)


class RetrainError(ApexStreamError):
    """Retraining cannot run (too little stored history)."""


@dataclass(frozen=True)
class RetrainResult:
    """The registered candidates, the held-out comparison and the manifest that tests them."""

    version: str
    rows: int
    candidates: list[ModelEntry]
    #: member -> {"active": metrics, "candidate": metrics} on the held-out tail
    comparison: dict[str, dict[str, dict[str, float]]]
    manifest: Manifest


def load_history(engine: Engine, since: datetime, window: int) -> Dataset:
    """Stored predictions with outcomes, oldest first (see the module docstring)."""
    with engine.connect() as connection:
        newest_first = connection.execute(
            HISTORY_SQL,
            {"feature_version": FEATURE_VERSION, "since": since, "window": window},
        ).all()
    rows = newest_first[::-1]
    X = np.array([r[0] for r in rows], dtype=np.float64).reshape(len(rows), len(FEATURES))
    y = np.array([r[1] for r in rows], dtype=np.float32)
    profit = np.array([r[2] for r in rows], dtype=np.float64)
    stamps = np.array([float(r[3]) for r in rows])
    return Dataset(X, y, profit, stamps, np.full(len(rows), np.nan))


def next_version(registry: Registry) -> str:
    """The next minor version after every registered version of a member that can be A/B
    tested."""
    newest = max(e.semver for e in registry.entries() if e.name in SPLITTABLE)
    return f"{newest[0]}.{newest[1] + 1}.0"


def retrain(
    engine: Engine,
    models_dir: Path,
    *,
    since: datetime,
    window: int,
    min_rows: int,
    candidate_traffic: float,
    threshold: float,
    console: Console,
    seed: int = 0,
) -> RetrainResult:
    """Train, compare, register and start the A/B test (see the module docstring)."""
    registry = Registry(models_dir)

    with _step(console, "loading stored predictions and outcomes"):
        data = load_history(engine, since, window)
    if len(data) < min_rows or len(np.unique(data.y)) < 2:
        raise RetrainError(
            f"{len(data):,} stored predictions with outcomes since {since:%Y-%m-%d %H:%M:%S}; "
            f"retraining needs {min_rows:,} with both successes and failures"
        )
    n = len(data)
    a, b = int(n * SPLIT[0]), int(n * SPLIT[1])
    means = np.nanmean(data.X[:a], axis=0)
    means = np.where(np.isnan(means), 0.0, means)  # a feature never seen in training
    clean = data.imputed(means)
    train, val, test = clean.slice(0, a), clean.slice(a, b), clean.slice(b, n)
    console.print(
        f"history: {n:,} outcomes, success rate {data.y.mean():.3f}; "
        f"train {len(train):,} / validation {len(val):,} / held-out tail {len(test):,}"
    )
    version = next_version(registry)
    with _step(console, f"training xgboost {version}"):
        xgb_bytes, _ = train_xgboost(train.X, train.y, val.X, val.y, seed)
    with _step(console, f"training the ONNX network {version}"):
        onnx_bytes, _ = train_mlp(
            train.X, train.y, val.X, val.y, seed=seed, feature_names=FEATURES, version=version
        )
    files = {"xgboost": xgb_bytes, "onnx": onnx_bytes}  # the new versions' model files

    with _step(console, "comparing with the active versions on the held-out tail"):
        raw_tail = data.slice(b, n).X
        comparison = {}
        for name, blob in files.items():
            model = SPECS[name].load(blob, version, "cpu", 1)
            active = registry.active(name)
            current = load_member(registry, active, device="cpu", threads=1)
            old_means = training_means(active)
            comparison[name] = {
                "active": classification_metrics(
                    test.y, current.predict(impute(raw_tail, old_means)), threshold
                ),
                "candidate": classification_metrics(test.y, model.predict(test.X), threshold),
            }

    if registry.manifest().testing():
        raise RetrainError(
            "an A/B test started while retraining (by an operator?): it goes on, and these "
            "versions are not registered"
        )
    created = now_iso()
    provenance = {"rows": float(n), "history_from": float(data.timestamp[0])}
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, blob in files.items():
            path = Path(tmp) / f"{name}.{SPECS[name].suffix}"
            path.write_bytes(blob)
            metrics = {f"test_{k}": v for k, v in comparison[name]["candidate"].items()}
            entries.append(
                registry.register(
                    name,
                    version,
                    path,
                    metrics=metrics | provenance,
                    params={"impute": means.tolist()},
                    created=created,
                )
            )
    for name in files:
        active_version = registry.active(name).version
        registry.split(name, {active_version: 1 - candidate_traffic, version: candidate_traffic})
    return RetrainResult(version, n, entries, comparison, registry.manifest())


@contextmanager
def _step(console: Console, what: str) -> Iterator[None]:
    """A spinner while a long step runs, then its duration."""
    started = time.perf_counter()
    with console.status(what):
        yield
    console.print(f"[green]✓[/green] {what} ({time.perf_counter() - started:.1f} s)")
