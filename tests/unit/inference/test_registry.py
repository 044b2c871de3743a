"""The model registry: checksums and feature versions are enforced, the manifest is merged by
name and version, the shipped manifest vouches for every active file, bad manifests say why,
and versions are registered, A/B-tested, promoted and rolled back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from apex_stream.features import FEATURE_VERSION
from apex_stream.features.engine import ENGINE_FEATURE_VERSION
from apex_stream.inference.members import MEMBERS
from apex_stream.inference.registry import (
    MANIFEST,
    ModelEntry,
    ModelError,
    Registry,
    sha256_of,
    validate,
)
from apex_stream.settings import Settings


def entry(folder: Path, name: str, version: str, content: bytes = b"", **changes) -> ModelEntry:
    """An entry for a file written now (its checksum computed independently here)."""
    path = f"{name}-{version}.bin"
    (folder / path).write_bytes(content or f"{name} {version}".encode())
    fields = {
        "name": name,
        "version": version,
        "type": "test",
        "path": path,
        "sha256": hashlib.sha256((folder / path).read_bytes()).hexdigest(),
        "feature_version": FEATURE_VERSION,
        "metrics": {"test_auc": 0.75},
        "created": "2026-01-01T00:00:00+00:00",
    }
    fields.update(changes)
    return ModelEntry(**fields)


def test_load_bytes_returns_the_verified_file(tmp_path: Path) -> None:
    e = entry(tmp_path, "xgboost", "1.0.0", b"\x00model bytes\xff")
    assert Registry(tmp_path).load_bytes(e) == b"\x00model bytes\xff"
    assert sha256_of(tmp_path / e.path) == e.sha256


def test_changed_file_is_refused_with_a_checksum_mismatch(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    e = entry(tmp_path, "xgboost", "1.2.0", b"original")
    registry.add([e])
    (tmp_path / e.path).write_bytes(b"tampered")

    (stored,) = registry.entries()
    with pytest.raises(ModelError, match=r"checksum mismatch for xgboost@1\.2\.0") as info:
        registry.load_bytes(stored)
    message = str(info.value)
    assert e.path in message
    assert e.sha256[:12] in message
    assert hashlib.sha256(b"tampered").hexdigest()[:12] in message


def test_other_feature_version_is_refused(tmp_path: Path) -> None:
    e = entry(tmp_path, "onnx", "3.0.0", feature_version="0.9")
    with pytest.raises(ModelError, match=r"onnx@3\.0\.0 was trained on feature list 0\.9") as info:
        Registry(tmp_path).load_bytes(e)
    assert f"computes {FEATURE_VERSION}" in str(info.value)
    assert "apex-stream models train" in str(info.value)


def test_entry_without_a_file_is_refused(tmp_path: Path) -> None:
    e = entry(tmp_path, "stacking", "1.0.0", path=None, sha256=None)
    with pytest.raises(ModelError, match=r"stacking@1\.0\.0 has no file"):
        Registry(tmp_path).load_bytes(e)


def test_add_replaces_the_same_name_and_version_and_keeps_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    registry = Registry(folder)
    first = [
        entry(folder, "xgboost", "1.0.0", traffic=0.9),
        entry(folder, "onnx", "1.0.0"),
        entry(folder, "xgboost", "1.1.0", status="candidate", traffic=0.1),
    ]
    registry.add(first)
    replacement = entry(
        folder, "xgboost", "1.0.0", b"retrained", traffic=0.9, metrics={"test_auc": 0.9}
    )
    registry.add([replacement])

    entries = registry.entries()
    assert [e.key for e in entries] == ["onnx@1.0.0", "xgboost@1.0.0", "xgboost@1.1.0"]
    by_key = {e.key: e for e in entries}
    assert by_key["xgboost@1.0.0"] == replacement
    assert by_key["xgboost@1.1.0"] == first[2]
    assert by_key["onnx@1.0.0"] == first[1]
    assert registry.load_bytes(by_key["xgboost@1.0.0"]) == b"retrained"

    raw = json.loads((folder / MANIFEST).read_text())
    assert len(raw["models"]) == 3


def test_add_creates_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "models"
    registry = Registry(folder)
    registry.add([ModelEntry("stacking", "1.0.0", "meta", None, None, FEATURE_VERSION, {}, "now")])
    assert [e.key for e in registry.entries()] == ["stacking@1.0.0"]


def test_active_is_the_active_version_even_when_a_candidate_takes_more(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.add(
        [
            entry(tmp_path, "xgboost", "1.0.0", traffic=0.3),
            entry(tmp_path, "xgboost", "2.0.0", status="candidate", traffic=0.7),
            entry(tmp_path, "xgboost", "0.9.0", status="archived", traffic=0.0),
        ]
    )
    assert registry.active("xgboost").version == "1.0.0"
    assert [e.version for e in registry.manifest().serving("xgboost")] == ["1.0.0", "2.0.0"]
    with pytest.raises(ModelError, match=r"no active 'onnx' model in .*manifest\.json"):
        registry.active("onnx")
    with pytest.raises(ModelError, match=r"no active 'online' model"):
        registry.active("online")


def test_missing_manifest_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no manifest\.json in .*apex-stream models train"):
        Registry(tmp_path).active("xgboost")


def test_shipped_manifest_verifies() -> None:
    registry = Registry(Settings().models_dir)
    entries = registry.entries()
    active = {e.name: e for e in entries if e.status == "active"}
    assert {*MEMBERS, "stacking", "engine"} <= active.keys()
    for name, e in active.items():
        assert registry.active(name) == e
        assert e.feature_version == (
            ENGINE_FEATURE_VERSION if name == "engine" else FEATURE_VERSION
        )
        if e.path is None:
            assert e.sha256 is None
            continue
        data = registry.load_bytes(e)
        assert hashlib.sha256(data).hexdigest() == e.sha256
        assert len(data) > 0


def test_the_shipped_manifest_is_valid_and_bad_ones_say_why(registry: Registry) -> None:
    entries = registry.entries()
    validate(entries)
    xgb = next(e for e in entries if e.name == "xgboost")
    cases = {
        "version must be semantic": [
            *entries,
            replace(xgb, version="v2", status="candidate", traffic=0.0),
        ],
        "must sum to 1": [replace(e, traffic=0.7) if e is xgb else e for e in entries],
        "2 active versions": [*entries, replace(xgb, version="1.1.0")],
        "feature-list mismatch": [
            replace(e, feature_version="0.9") if e is xgb else e for e in entries
        ],
        "archived but has traffic": [
            *entries,
            replace(xgb, version="0.9.0", status="archived", traffic=0.5),
        ],
        "listed twice": [*entries, xgb],
    }
    for reason, bad in cases.items():
        with pytest.raises(ModelError, match=reason):
            validate(bad)


def test_register_ab_test_promote_and_rollback(registry: Registry) -> None:
    file = registry.folder / "xgboost-1.0.0.ubj"
    entry = registry.register("xgboost", "1.1.0", file, created="2026-11-21T00:00:00+00:00")
    assert (entry.status, entry.traffic) == ("candidate", 0.0)
    assert (registry.folder / "xgboost-1.1.0.ubj").read_bytes() == file.read_bytes()
    with pytest.raises(ModelError, match="already registered"):
        registry.register("xgboost", "1.1.0", file, created="x")
    with pytest.raises(ModelError, match="feature-list mismatch"):
        registry.register("xgboost", "1.2.0", file, feature_version="0.1", created="x")
    assert not (registry.folder / "xgboost-1.2.0.ubj").exists()

    with pytest.raises(ModelError, match="sum to 1.1"):
        registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.3})
    with pytest.raises(ModelError, match="unknown version xgboost@2.0.0"):
        registry.split("xgboost", {"1.0.0": 0.8, "2.0.0": 0.2})
    with pytest.raises(ModelError, match="must include the active"):
        registry.split("xgboost", {"1.1.0": 1.0})
    registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.2})
    assert [(e.version, e.traffic) for e in registry.manifest().serving("xgboost")] == [
        ("1.0.0", 0.8),
        ("1.1.0", 0.2),
    ]

    assert registry.rollback("xgboost").version == "1.0.0"  # the test is stopped
    assert registry.get("xgboost", "1.1.0").status == "archived"
    with pytest.raises(ModelError, match="nothing to roll back to"):
        registry.rollback("xgboost")

    registry.register("xgboost", "1.2.0", file, created="x")
    promoted = registry.promote("xgboost", "1.2.0")
    assert (promoted.status, promoted.traffic) == ("active", 1.0)
    assert registry.get("xgboost", "1.0.0").status == "archived"
    assert registry.rollback("xgboost").version == "1.0.0"  # the version 1.2.0 replaced
    assert registry.get("xgboost", "1.2.0").status == "archived"
    raw = json.loads(registry.path.read_text())
    validate(registry.entries())
    assert [m["version"] for m in raw["models"] if m["name"] == "xgboost"] == [
        "1.0.0",
        "1.1.0",
        "1.2.0",
    ]
