"""`apex-stream models retrain`: new XGBoost and ONNX versions from what the pipeline stored.

The training set is every stored prediction with a known outcome, with the features the worker
computed when it scored the opportunity (``predictions.features``), newest ``window`` rows
(optionally only those predicted after ``since``, e.g. a detected drift). It is split
chronologically: 70 % trains, 15 % early-stops, and the last 15 % (the most recent outcomes,
never seen in training) compares the new versions with the active ones. Every new version is
registered; those the retrain gate (:mod:`.gate`) finds not worse than the active version on that
tail enter an A/B test with ``candidate_traffic`` of the routes, the others are kept as
``rejected`` with their figures. When a version enters the test, the stacking meta-learner is
refitted on the validation slice over the members that would serve if the test promoted it (the
new versions that passed, the active versions of the others) and registered as a candidate
without traffic, which the lifecycle controller promotes or archives with the test. The new
versions early-stopped on the validation slice, so their scores there are a little optimistic
and the refit leans on them slightly more than the tail would justify (its held-out figures are
in its metrics). ``models train`` keeps the validation slice out of fold by early-stopping
XGBoost on its own training rows; a retrain's window is small enough that it keeps them.

The recipe is ``models train``'s where it applies: XGBoost trains with the hyper-parameters
cross-validation chose for the active version, and every version records its feature
importance. A new booster starts fresh rather than continuing the active one: continuing it
measured inconsistently (``bench/quality.md``: better in both of its windows, worse after a
regime shift with another active version), and its old trees carry the regime that a retrain
after a drift is meant to leave.
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
from ..inference.voting import StackingParams, VotingConfig, fit_stacking, vote
from .dataset import Dataset, feature_bounds
from .gate import gate
from .importance import permutation_importance
from .metrics import classification_metrics
from .mlp import train_mlp
from .xgb import gain_shares, train_xgboost

SPLIT = (0.70, 0.85)
STACKING = "stacking"
#: the figures the retrain gate compares, recorded with each new version beside its own
GATED = ("auc", "logloss")

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
    """The registered versions, the held-out comparison, the gate's verdicts and the manifest
    that tests the versions that passed."""

    version: str
    rows: int
    #: every new member version as registered: candidates under test, or rejected
    candidates: list[ModelEntry]
    #: member -> {"active": metrics, "candidate": metrics} on the held-out tail
    comparison: dict[str, dict[str, dict[str, float]]]
    #: member -> why the gate refused its new version traffic
    rejected: dict[str, str]
    #: the refitted meta-learner (a candidate without traffic), None when nothing is tested or
    #: the manifest has no stacking
    stacking: ModelEntry | None
    manifest: Manifest

    @property
    def tested(self) -> list[str]:
        """The members whose new version entered the A/B test."""
        return [e.name for e in self.candidates if e.status == "candidate"]


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
    auc_margin: float,
    logloss_margin: float,
    console: Console,
    seed: int = 0,
) -> RetrainResult:
    """Train, compare, gate, register and start the A/B test (see the module docstring)."""
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
    # the hyper-parameters cross-validation chose for the active version (``models train``)
    tuned = dict(registry.active("xgboost").params.get("xgboost", {}))
    with _step(console, f"training xgboost {version}"):
        xgb_bytes, _ = train_xgboost(train.X, train.y, val.X, val.y, seed, params=tuned)
    with _step(console, f"training the ONNX network {version}"):
        onnx_bytes, _ = train_mlp(
            train.X, train.y, val.X, val.y, seed=seed, feature_names=FEATURES, version=version
        )
    files = {"xgboost": xgb_bytes, "onnx": onnx_bytes}  # the new versions' model files

    manifest = registry.manifest()
    stacking = next(
        (e for e in manifest.entries if e.name == STACKING and e.status == "active"), None
    )
    stacked = tuple(stacking.params["members"]) if stacking else ()
    with _step(console, "comparing with the active versions on the held-out tail"):
        # (validation, tail) scores: the active versions' of raw rows with their own means
        active = {
            name: _active_scores(registry, name, data.slice(a, b).X, data.slice(b, n).X)
            for name in {*files, *stacked}
        }
        fresh, importance = {}, {}
        for name, blob in files.items():
            model = SPECS[name].load(blob, version, "cpu", 1)
            fresh[name] = (model.predict(val.X), model.predict(test.X))
            importance[name] = permutation_importance(
                model.predict, test.X, test.y, FEATURES, seed=seed
            )
        comparison = {
            name: {
                "active": classification_metrics(test.y, active[name][1], threshold),
                "candidate": classification_metrics(test.y, fresh[name][1], threshold),
            }
            for name in files
        }
    verdicts = gate(comparison, auc_margin, logloss_margin)
    rejected = {name: why for name, why in verdicts.items() if why is not None}
    passed = [name for name in files if name not in rejected]
    for name, why in rejected.items():
        console.print(f"[yellow]✗[/yellow] {name} {version} rejected by the retrain gate: {why}")

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
            metrics |= {f"active_test_{k}": comparison[name]["active"][k] for k in GATED}
            entries.append(
                registry.register(
                    name,
                    version,
                    path,
                    metrics=metrics | provenance,
                    params={
                        "impute": means.tolist(),
                        "bounds": feature_bounds(train.X),
                        "importance": importance[name],
                    }
                    | (
                        {"xgboost": tuned, "gain": gain_shares(blob, FEATURES)}
                        if name == "xgboost"
                        else {}
                    ),
                    created=created,
                )
            )
    entries = [registry.reject(e.name, e.version) if e.name in rejected else e for e in entries]
    refit = None
    if passed and stacking:
        with _step(console, f"refitting the stacking meta-learner {version}"):
            chosen = {m: fresh[m] if m in passed else active[m] for m in stacked}
            refit = _stacking_entry(
                stacking,
                fit_stacking({m: s[0] for m, s in chosen.items()}, val.y, stacked),
                {m: s[1] for m, s in chosen.items()},
                {m: s[1] for m, s in active.items() if m in stacked},
                test.y,
                version=version,
                versions={
                    m: version if m in passed else registry.active(m).version for m in stacked
                },
                created=created,
                provenance=provenance,
            )
            registry.add([refit])
    for name in passed:
        active_version = registry.active(name).version
        registry.split(name, {active_version: 1 - candidate_traffic, version: candidate_traffic})
    return RetrainResult(version, n, entries, comparison, rejected, refit, registry.manifest())


def _active_scores(registry: Registry, name: str, *raw: np.ndarray) -> tuple[np.ndarray, ...]:
    """The active version's scores of each block of raw rows, imputed with its own means."""
    entry = registry.active(name)
    model = load_member(registry, entry, device="cpu", threads=1)
    means = training_means(entry)
    return tuple(model.predict(impute(X, means)) for X in raw)


def _stacking_entry(
    active: ModelEntry,
    params: StackingParams,
    tail: dict[str, np.ndarray],
    active_tail: dict[str, np.ndarray],
    y: np.ndarray,
    *,
    version: str,
    versions: dict[str, str],
    created: str,
    provenance: dict[str, float],
) -> ModelEntry:
    """The refitted meta-learner as a candidate without traffic, with its held-out figures and
    the active meta-learner's on the same tail (over the active members)."""
    old = StackingParams(
        tuple(active.params["members"]),
        tuple(active.params["coef"]),
        float(active.params["intercept"]),
    )
    new_score = vote(tail, VotingConfig(strategy="stacking", stacking=params)).score
    old_score = vote(active_tail, VotingConfig(strategy="stacking", stacking=old)).score
    before = classification_metrics(y, old_score)
    metrics = {f"test_{k}": v for k, v in classification_metrics(y, new_score).items()}
    metrics |= {f"active_test_{k}": before[k] for k in GATED}
    return ModelEntry(
        name=STACKING,
        version=version,
        type=active.type,
        path=None,
        sha256=None,
        feature_version=FEATURE_VERSION,
        metrics=metrics | provenance,
        created=created,
        status="candidate",
        traffic=0.0,
        params={
            "members": list(params.members),
            "coef": list(params.coef),
            "intercept": params.intercept,
            "versions": versions,
        },
    )


@contextmanager
def _step(console: Console, what: str) -> Iterator[None]:
    """A spinner while a long step runs, then its duration."""
    started = time.perf_counter()
    with console.status(what):
        yield
    console.print(f"[green]✓[/green] {what} ({time.perf_counter() - started:.1f} s)")
