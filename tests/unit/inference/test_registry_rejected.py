"""A version the retrain gate rejected is kept with its figures but never serves: no traffic,
no split, no promotion, each refusal saying why and what to do instead."""

from __future__ import annotations

from dataclasses import replace

import pytest

from apex_stream.inference.registry import ModelError, Registry, validate


def rejected(registry: Registry) -> Registry:
    """The shipped models with xgboost 1.1.0 registered and rejected."""
    file = registry.folder / "xgboost-1.0.0.ubj"
    registry.register("xgboost", "1.1.0", file, metrics={"test_auc": 0.7}, created="x")
    entry = registry.reject("xgboost", "1.1.0")
    assert (entry.status, entry.traffic, entry.metrics) == ("rejected", 0.0, {"test_auc": 0.7})
    return registry


def test_a_rejected_version_cannot_be_tested_or_promoted(registry: Registry) -> None:
    rejected(registry)
    revision = registry.manifest().revision
    with pytest.raises(ModelError, match=r"xgboost@1\.1\.0 was rejected by the retrain gate") as e:
        registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.2})
    assert "cannot be tested" in str(e.value) and "register it again" in str(e.value)
    with pytest.raises(ModelError, match="cannot be promoted"):
        registry.promote("xgboost", "1.1.0")
    assert registry.manifest().revision == revision
    assert [e.version for e in registry.manifest().serving("xgboost")] == ["1.0.0"]
    assert registry.manifest().testing() == []


def test_only_a_candidate_without_traffic_can_be_rejected(registry: Registry) -> None:
    with pytest.raises(ModelError, match=r"xgboost@1\.0\.0 is active with traffic 1"):
        registry.reject("xgboost", "1.0.0")
    rejected(registry)
    with pytest.raises(ModelError, match="is rejected"):
        registry.reject("xgboost", "1.1.0")
    registry.register("xgboost", "1.2.0", registry.folder / "xgboost-1.0.0.ubj", created="x")
    registry.split("xgboost", {"1.0.0": 0.8, "1.2.0": 0.2})
    with pytest.raises(ModelError, match=r"is candidate with traffic 0\.2"):
        registry.reject("xgboost", "1.2.0")


def test_a_manifest_with_a_rejected_version_validates_it(registry: Registry) -> None:
    entries = rejected(registry).entries()
    validate(entries)
    kept = next(e for e in entries if e.status == "rejected")
    # it never serves, so a feature list the pipeline moved on from does not matter
    validate([replace(e, feature_version="0.9") if e is kept else e for e in entries])
    with pytest.raises(ModelError, match=r"xgboost@1\.1\.0: rejected but has traffic 0\.2"):
        validate([replace(e, traffic=0.2) if e is kept else e for e in entries])
