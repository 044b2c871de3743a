"""Retrained versions take the next minor version, and a split marks the one under test."""

from __future__ import annotations

from apex_stream.inference.registry import Registry
from apex_stream.training.retrain import next_version


def test_retrained_versions_take_the_next_minor_version(registry: Registry) -> None:
    assert next_version(registry) == "1.1.0"
    file = registry.folder / "xgboost-1.0.0.ubj"
    registry.register("onnx", "1.3.2", registry.folder / "onnx-1.0.0.onnx", created="x")
    registry.register("xgboost", "1.1.0", file, created="x")
    assert next_version(registry) == "1.4.0"
    assert registry.manifest().testing() == []
    registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.2})
    (testing,) = registry.manifest().testing()
    assert testing.key == "xgboost@1.1.0" and testing.testing_since is not None
    registry.promote("xgboost", "1.1.0")
    assert registry.get("xgboost", "1.1.0").testing_since is None
