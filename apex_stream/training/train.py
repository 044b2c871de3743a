"""`apex-stream models train`: the baseline ensemble and the engine model from simulator data.

The simulated history is split chronologically: the first 70 % trains the members and the
engine, the next 15 % (validation) fits the stacking meta-learner and early-stops the engine,
and the last 15 % (never seen in training) gives the metrics recorded in the manifest.

The recipe (each choice measured on held-out simulator seeds in ``bench/quality.md``):

- XGBoost's hyper-parameters are chosen by time-series cross-validation on the training rows
  (:mod:`.tuning`), and it early-stops on the newest 15 % of them, the network on a random 10 %
  of them: the validation slice stays out of fold for every member, so the meta-learner
  weighs the members as they score rows they never saw. (Members refitted on time-series folds
  of fewer rows score less well than the final ones, and a meta-learner fitted on their scores
  measured worse calibrated.)
- Every member version records its feature importance.
- Left out because they measured worse: class weights (``scale_pos_weight``) and
  profit-weighted samples, which miscalibrate the probabilities that the vote and the
  expected-profit decision read; dynamic quantization of the ONNX network, slower and lower on
  the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from .dataset import Dataset, feature_bounds, simulate
from .engine import train_engine
from .importance import permutation_importance
from .metrics import classification_metrics, roc_auc
from .mlp import train_mlp
from .quality import decision_figures, has_truth
from .tuning import choose_params
from .xgb import gain_shares, train_xgboost

SPLIT = (0.70, 0.85)
#: the share of the training rows XGBoost trains on; the newest rest early-stops it
XGB_TRAIN_SHARE = 0.85


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
    if has_truth(test.truth):
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


def fit_members(
    train: Dataset,
    val: Dataset,
    *,
    params: Mapping[str, float],
    seed: int,
    version: str,
) -> dict[str, tuple[bytes, dict[str, float]]]:
    """Every member trained on ``train`` alone (see the module docstring): its model file and
    its validation metrics. The online learner warm-starts with one pass over ``train``, as it
    learns in service."""
    cut = int(len(train) * XGB_TRAIN_SHARE)
    xgb_bytes, xgb_val = train_xgboost(
        train.X[:cut], train.y[:cut], train.X[cut:], train.y[cut:], seed, params=params
    )
    onnx_bytes, onnx_val = train_mlp(
        train.X, train.y, val.X, val.y, seed=seed, feature_names=FEATURES, version=version
    )
    online = OnlineLearner(FEATURES, version)
    online.learn(train.X, train.y)
    return {
        "xgboost": (xgb_bytes, xgb_val),
        "onnx": (onnx_bytes, onnx_val),
        "online": (online.snapshot(), {}),
    }


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
    with console.status("choosing xgboost's hyper-parameters (time-series cross-validation)"):
        params, cv = choose_params(train.X, train.y, seed=seed)
    console.print(f"xgboost: {params} (cross-validated log loss {cv['cv_logloss']:.4f})")
    with console.status("training xgboost, the ONNX network and the online learner"):
        trained = fit_members(train, val, params=params, seed=seed, version=version)
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
        extra: dict[str, object] = {
            "importance": permutation_importance(
                members[name].predict, test.X, test.y, FEATURES, seed=seed
            )
        }
        if name == "xgboost":
            metrics |= cv
            extra |= {"xgboost": params, "gain": gain_shares(blob, FEATURES)}
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
                params={"impute": means.tolist(), "bounds": feature_bounds(train.X)} | extra,
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
