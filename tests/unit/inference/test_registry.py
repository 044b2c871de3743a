"""The model registry: checksums and feature versions are enforced, the manifest is merged by
name and version, and the shipped manifest vouches for every active file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from apex_stream.features import FEATURE_VERSION
from apex_stream.inference.members import MEMBERS
from apex_stream.inference.registry import MANIFEST, ModelEntry, ModelError, Registry, sha256_of
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
    assert {*MEMBERS, "stacking"} <= active.keys()
    for name, e in active.items():
        assert registry.active(name) == e
        assert e.feature_version == FEATURE_VERSION
        if e.path is None:
            assert e.sha256 is None
            continue
        data = registry.load_bytes(e)
        assert hashlib.sha256(data).hexdigest() == e.sha256
        assert len(data) > 0
