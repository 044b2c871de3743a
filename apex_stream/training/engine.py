"""Training the engine model (seed 002's ``/predict``) on the simulated history the members
learn from, mapped to seed 002's 8 feature definitions
(:func:`apex_stream.features.engine.engine_features`)."""

from __future__ import annotations

from pathlib import Path

from ..features.engine import ENGINE_FEATURE_VERSION, ENGINE_FEATURES, engine_features
from ..inference.members import ENGINE
from ..inference.registry import ModelEntry, sha256_of
from .dataset import Dataset
from .metrics import classification_metrics
from .xgb import train_xgboost


def train_engine(
    train: Dataset,
    val: Dataset,
    test: Dataset,
    *,
    folder: Path,
    version: str,
    seed: int,
    created: str,
    provenance: dict[str, float],
) -> ModelEntry:
    """A booster on the 8 features, early-stopped on ``val``, scored on the held-out ``test``;
    its file written to ``folder`` and its manifest entry (not yet registered)."""
    blob, val_metrics = train_xgboost(
        engine_features(train.X), train.y, engine_features(val.X), val.y, seed
    )
    model = ENGINE.load(blob, version, "cpu", 1)
    test_metrics = classification_metrics(test.y, model.predict(engine_features(test.X)))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ENGINE.name}-{version}.{ENGINE.suffix}"
    path.write_bytes(blob)
    return ModelEntry(
        name=ENGINE.name,
        version=version,
        type=ENGINE.type,
        path=path.name,
        sha256=sha256_of(path),
        feature_version=ENGINE_FEATURE_VERSION,
        metrics={f"test_{k}": v for k, v in test_metrics.items()}
        | {f"val_{k}": v for k, v in val_metrics.items()}
        | provenance,
        created=created,
        params={"features": list(ENGINE_FEATURES)},
    )
