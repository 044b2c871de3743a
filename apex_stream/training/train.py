"""`apex-stream models train`: the baseline ensemble and the engine model from simulator data.

The simulated history is split chronologically: the first 70 % trains the members and the
engine, the next 15 % early-stops them and fits the stacking meta-learner, and the last 15 %
(never seen in training) gives the metrics recorded in the manifest.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console

from ..features import FEATURE_VERSION, FEATURES
from ..inference.members import SPECS
from ..inference.online_member import OnlineLearner
from ..inference.registry import ModelEntry, Registry, sha256_of
from ..inference.voting import VotingConfig, fit_stacking, vote
from .dataset import Dataset, simulate
from .engine import train_engine
from .metrics import classification_metrics, roc_auc
from .mlp import train_mlp
from .quality import decision_figures
from .xgb import train_xgboost

SPLIT = (0.70, 0.85)


def train_simulated(
    folder: Path,
    *,
    version: str,
    seed: int,
    opportunities: int,
    console: Console,
    engine_only: bool = False,
) -> list[ModelEntry]:
    """:func:`train_baseline` on ``opportunities`` simulated with ``seed``."""
    with console.status(f"simulating {opportunities:,} opportunities (seed {seed})"):
        data = simulate(seed, opportunities)
    return train_baseline(
        folder, data, version=version, seed=seed, console=console, engine_only=engine_only
    )


def train_baseline(
    folder: Path,
    data: Dataset,
    *,
    version: str,
    seed: int,
    console: Console,
    engine_only: bool = False,
    source: str | None = None,
) -> list[ModelEntry]:
    """Train every member and the engine model on ``data`` (rows in time order; only the
    engine with ``engine_only``: the members' files stay as they are), write the files and
    register them as the active versions (``source``: where the user's history came from,
    recorded with each version)."""
    n = len(data)
    a, b = int(n * SPLIT[0]), int(n * SPLIT[1])
    means = np.nanmean(data.X[:a], axis=0)
    data = data.imputed(means)
    train, val, test = data.slice(0, a), data.slice(a, b), data.slice(b, n)
    console.print(
        f"dataset: {n:,} rows, success rate {data.y.mean():.3f}; "
        f"train {len(train):,} / validation {len(val):,} / test {len(test):,}"
    )
    created = datetime.now(UTC).isoformat(timespec="seconds")
    provenance = {"seed": float(seed), "rows": float(n)}
    if not np.isnan(test.truth).any():
        # the AUC of the simulator's hidden success probability: the ceiling for any model
        provenance["truth_auc_test"] = roc_auc(test.y, test.truth)
    if source is not None:  # the user's history: the time it spans
        provenance |= {
            "history_from": float(data.timestamp[0]),
            "history_to": float(data.timestamp[-1]),
        }
    entries: list[ModelEntry] = []
    if not engine_only:
        entries += train_members(
            train,
            val,
            test,
            means,
            folder=folder,
            version=version,
            seed=seed,
            created=created,
            provenance=provenance,
            console=console,
        )
    with console.status("training the engine model on seed 002's 8 features"):
        entries.append(
            train_engine(
                train,
                val,
                test,
                folder=folder,
                version=version,
                seed=seed,
                created=created,
                provenance=provenance,
            )
        )
    if source is not None:
        entries = [replace(e, params=e.params | {"source": source}) for e in entries]
    registry = Registry(folder)
    if registry.path.exists():  # models already serving keep serving; new versions wait
        active = {e.name: e.version for e in registry.entries() if e.status == "active"}
        entries = [
            replace(e, status="candidate", traffic=0.0)
            if active.get(e.name, e.version) != e.version
            else e
            for e in entries
        ]
    registry.add(entries)
    return entries


def train_members(
    train: Dataset,
    val: Dataset,
    test: Dataset,
    means: np.ndarray,
    *,
    folder: Path,
    version: str,
    seed: int,
    created: str,
    provenance: dict[str, float],
    console: Console,
) -> list[ModelEntry]:
    """Every member and the stacking meta-learner: files written to ``folder``, entries not
    yet registered."""
    with console.status("training xgboost"):
        xgb_bytes, xgb_val = train_xgboost(train.X, train.y, val.X, val.y, seed)
    with console.status("training the ONNX network"):
        onnx_bytes, onnx_val = train_mlp(
            train.X, train.y, val.X, val.y, seed=seed, feature_names=FEATURES, version=version
        )
    with console.status("warm-starting the online learner"):
        online = OnlineLearner(FEATURES, version)
        online.learn(train.X, train.y)

    # each member's model file and its validation metrics (from early stopping)
    trained = {
        "xgboost": (xgb_bytes, xgb_val),
        "onnx": (onnx_bytes, onnx_val),
        "online": (online.snapshot(), {}),
    }
    members = {
        name: SPECS[name].load(blob, version, "cpu", 1) for name, (blob, _) in trained.items()
    }
    val_scores = {name: m.predict(val.X) for name, m in members.items()}
    stacking = fit_stacking(val_scores, val.y, tuple(members))
    test_scores = {name: m.predict(test.X) for name, m in members.items()}
    entries = []
    for name, (blob, val_metrics) in trained.items():
        path = folder / f"{name}-{version}.{SPECS[name].suffix}"
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        metrics = {
            f"test_{k}": v for k, v in classification_metrics(test.y, test_scores[name]).items()
        }
        metrics |= {f"test_{k}": v for k, v in decision_figures(test, test_scores[name]).items()}
        metrics |= {f"val_{k}": v for k, v in val_metrics.items()} | provenance
        entries.append(
            ModelEntry(
                name=name,
                version=version,
                type=SPECS[name].type,
                path=path.name,
                sha256=sha256_of(path),
                feature_version=FEATURE_VERSION,
                metrics=metrics,
                created=created,
                params={"impute": means.tolist()},
            )
        )
    stacked = vote(test_scores, VotingConfig(strategy="stacking", stacking=stacking)).score
    entries.append(
        ModelEntry(
            name="stacking",
            version=version,
            type="logistic-meta",
            path=None,
            sha256=None,
            feature_version=FEATURE_VERSION,
            metrics={f"test_{k}": v for k, v in classification_metrics(test.y, stacked).items()},
            created=created,
            params={
                "members": list(stacking.members),
                "coef": list(stacking.coef),
                "intercept": stacking.intercept,
            },
        )
    )
    return entries
