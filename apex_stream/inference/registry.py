"""The model manifest (models/manifest.json): the only way models reach a worker.

Every entry names a member, its semantic version, file, sha256, the feature-list version it was
trained on, training metrics, creation time, status and traffic weight. Loading verifies the
checksum and the feature version, so a worker never scores with a file it cannot vouch for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ApexStreamError
from ..features import FEATURE_VERSION

MANIFEST = "manifest.json"


class ModelError(ApexStreamError):
    """A model file or manifest entry that cannot be used."""


@dataclass(frozen=True)
class ModelEntry:
    """One version of one ensemble member."""

    name: str
    version: str
    type: str
    path: str | None
    sha256: str | None
    feature_version: str
    metrics: dict[str, float]
    created: str
    status: Literal["active", "candidate", "archived"] = "active"
    traffic: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Registry:
    """Reads and writes a models folder and its manifest."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / MANIFEST

    def entries(self) -> list[ModelEntry]:
        if not self.path.exists():
            raise ModelError(f"no {MANIFEST} in {self.folder}: run `apex-stream models train`")
        raw = json.loads(self.path.read_text())
        return [ModelEntry(**entry) for entry in raw["models"]]

    def active(self, name: str) -> ModelEntry:
        """The active version of a member."""
        found = [e for e in self.entries() if e.name == name and e.status == "active"]
        if not found:
            raise ModelError(f"no active {name!r} model in {self.path}")
        return max(found, key=lambda e: e.traffic)

    def load_bytes(self, entry: ModelEntry) -> bytes:
        """The entry's file, after checking its checksum and feature version."""
        if entry.feature_version != FEATURE_VERSION:
            raise ModelError(
                f"{entry.key} was trained on feature list {entry.feature_version}, this worker "
                f"computes {FEATURE_VERSION}: retrain it (`apex-stream models train`)"
            )
        if entry.path is None or entry.sha256 is None:
            raise ModelError(f"{entry.key} has no file")
        data = (self.folder / entry.path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise ModelError(
                f"checksum mismatch for {entry.key} ({entry.path}): manifest says "
                f"{entry.sha256[:12]}…, file is {digest[:12]}…; refusing to load it"
            )
        return data

    def add(self, entries: list[ModelEntry]) -> None:
        """Add entries (replacing any with the same name and version) and rewrite the manifest."""
        current = self.entries() if self.path.exists() else []
        keys = {e.key for e in entries}
        merged = [e for e in current if e.key not in keys] + entries
        merged.sort(key=lambda e: (e.name, e.version))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"models": [asdict(e) for e in merged]}, indent=2) + "\n")
