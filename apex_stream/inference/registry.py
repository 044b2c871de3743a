"""The model manifest (models/manifest.json): the only way models reach a worker.

Every entry names a model (an ensemble member, the engine, or the stacking meta-learner), its
semantic version, file, sha256, the feature-list version it was trained on, training metrics,
creation time, status and traffic weight. Loading verifies the checksum and the feature version
(each model of :data:`~apex_stream.inference.members.CATALOGUE` names its own list), so a worker
never scores with a file it cannot vouch for. A file gets traffic only after it loads and scores
a realistic batch with probabilities (:mod:`~apex_stream.inference.validation`): when it is
registered, and again from the registry's copy when a split or a promotion gives it traffic.
A retrained version the retrain gate refused is kept as ``rejected`` with its held-out figures:
it never takes traffic, is never split or promoted.
Every write bumps the manifest's ``revision``; workers apply a manifest only when its revision
is newer than the one they serve (see :mod:`apex_stream.inference.control`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelError as ModelError  # the registry's error, wherever it is raised
from ..features import FEATURE_VERSION
from .members import CATALOGUE
from .validation import FEATURE_WIDTHS as FEATURE_WIDTHS  # each feature list's width
from .validation import validate as validate_model

MANIFEST = "manifest.json"
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class ModelEntry:
    """One version of one model."""

    name: str
    version: str
    type: str
    path: str | None
    sha256: str | None
    feature_version: str
    metrics: dict[str, float]
    created: str
    status: Literal["active", "candidate", "archived", "rejected"] = "active"
    traffic: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    previous: str | None = None  # the version this one replaced when it was promoted
    testing_since: str | None = None  # when its current A/B traffic split began (ISO time)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def semver(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split("."))


def feature_version_of(name: str) -> str:
    """The feature list a model of this name must be trained on: the engine's is seed 002's,
    every other model's the pipeline's."""
    spec = CATALOGUE.get(name)
    return spec.feature_version if spec else FEATURE_VERSION


def validate(entries: list[ModelEntry]) -> None:
    """Raise :class:`ModelError` listing every problem of a manifest: versions, statuses,
    feature lists, and per member one active version whose serving traffic sums to 1."""
    keys = [e.key for e in entries]
    problems = [f"{k} is listed twice" for k in sorted({k for k in keys if keys.count(k) > 1})]
    for e in entries:
        problems += _entry_problems(e)
    for name in sorted({e.name for e in entries}):
        active = [e for e in entries if e.name == name and e.status == "active"]
        if len(active) != 1:
            problems.append(f"{name}: {len(active)} active versions, need exactly 1")
        serving = sum(e.traffic for e in entries if e.name == name and e.status != "archived")
        if not math.isclose(serving, 1.0, abs_tol=1e-6):
            problems.append(f"{name}: traffic weights sum to {serving:g}, must sum to 1")
    if problems:
        raise ModelError("invalid manifest: " + "; ".join(problems))


def _entry_problems(e: ModelEntry) -> list[str]:
    problems = []
    if not SEMVER.match(e.version):
        problems.append(f"{e.key}: version must be semantic (MAJOR.MINOR.PATCH)")
    if e.status not in ("active", "candidate", "archived", "rejected"):
        problems.append(f"{e.key}: unknown status {e.status!r}")
    if not 0 <= e.traffic <= 1:
        problems.append(f"{e.key}: traffic {e.traffic} outside [0, 1]")
    if e.status in ("archived", "rejected") and e.traffic:
        problems.append(f"{e.key}: {e.status} but has traffic {e.traffic}")
    expected = feature_version_of(e.name)
    if e.status not in ("archived", "rejected") and e.feature_version != expected:
        problems.append(
            f"{e.key}: feature-list mismatch: trained on {e.feature_version}, the pipeline "
            f"computes {expected}"
        )
    return problems


@dataclass(frozen=True)
class Manifest:
    """One revision of the manifest: what a worker serves."""

    revision: int
    entries: tuple[ModelEntry, ...]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Manifest:
        return cls(int(raw.get("revision", 0)), tuple(ModelEntry(**e) for e in raw["models"]))

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "models": [asdict(e) for e in self.entries]}

    def active(self, name: str) -> ModelEntry:
        """The active version of a member."""
        for e in self.entries:
            if e.name == name and e.status == "active":
                return e
        raise ModelError(f"no active {name!r} model in the manifest (revision {self.revision})")

    def serving(self, name: str) -> list[ModelEntry]:
        """The versions of a member that take traffic, the active one first."""
        found = [e for e in self.entries if e.name == name and e.traffic > 0]
        return sorted(found, key=lambda e: (e.status != "active", e.semver))

    def testing(self) -> list[ModelEntry]:
        """Candidates that take traffic: the arms of a running A/B test."""
        return [e for e in self.entries if e.status == "candidate" and e.traffic > 0]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refuse_rejected(entry: ModelEntry, what: str) -> None:
    if entry.status == "rejected":
        raise ModelError(
            f"{entry.key} was rejected by the retrain gate (worse than the active version on "
            f"held-out data, see its metrics), so it cannot be {what}; to serve that file "
            f"anyway, register it again under a new version"
        )


class Registry:
    """Reads and writes a models folder and its manifest."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / MANIFEST

    def manifest(self) -> Manifest:
        if not self.path.exists():
            raise ModelError(f"no {MANIFEST} in {self.folder}: run `apex-stream models train`")
        return Manifest.from_json(json.loads(self.path.read_text()))

    def entries(self) -> list[ModelEntry]:
        return list(self.manifest().entries)

    def get(self, name: str, version: str) -> ModelEntry:
        for e in self.entries():
            if e.name == name and e.version == version:
                return e
        known = sorted(e.version for e in self.entries() if e.name == name)
        raise ModelError(f"unknown version {name}@{version}; {name} has {known or 'none'}")

    def write(self, entries: list[ModelEntry]) -> Manifest:
        """Validate and replace the manifest atomically (readers never see half a file), as
        the next revision."""
        validate(entries)
        revision = self.manifest().revision + 1 if self.path.exists() else 1
        manifest = Manifest(revision, tuple(sorted(entries, key=lambda e: (e.name, e.semver))))
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        os.replace(tmp, self.path)
        return manifest

    def register(
        self,
        name: str,
        version: str,
        file: Path,
        *,
        feature_version: str | None = None,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        created: str,
    ) -> ModelEntry:
        """Validate a model file, copy it in and list it as a candidate without traffic, trained
        on the model's own feature list unless ``feature_version`` says otherwise. Unless ``params``
        say otherwise, it takes the active version's (a member's: its training means, which
        fill missing features)."""
        if name not in CATALOGUE:
            raise ModelError(f"unknown model {name!r}; models are {', '.join(CATALOGUE)}")
        if params is None:
            params = dict(self.active(name).params)
        if any(e.name == name and e.version == version for e in self.entries()):
            raise ModelError(f"{name}@{version} is already registered")
        feature_version = feature_version or feature_version_of(name)
        validate_model(name, version, file.read_bytes(), feature_version)
        target = f"{name}-{version}{file.suffix}"
        shutil.copyfile(file, self.folder / target)
        entry = ModelEntry(
            name=name,
            version=version,
            type=CATALOGUE[name].type,
            path=target,
            sha256=sha256_of(self.folder / target),
            feature_version=feature_version,
            metrics=metrics or {},
            created=created,
            status="candidate",
            traffic=0.0,
            params=params,
        )
        try:
            self.write([*self.entries(), entry])
        except ModelError:
            (self.folder / target).unlink()
            raise
        return entry

    def split(self, name: str, weights: dict[str, float]) -> list[ModelEntry]:
        """Start (or change) an A/B test: traffic per version; the active version must be in it
        and the weights must sum to 1; versions left out take no traffic, every version given
        traffic is validated again from its file here. Models that serve one version at a time
        (the online learner, the engine) are never split."""
        if name in CATALOGUE and not CATALOGUE[name].splittable:
            raise ModelError(
                f"{name} serves one version at a time, so it cannot be A/B tested: promote a "
                "version instead"
            )
        active = self.active(name)
        for version in weights:
            entry = self.get(name, version)
            if entry.status == "archived":
                raise ModelError(f"{entry.key} is archived; register a new version to test it")
            _refuse_rejected(entry, "tested")
        if active.version not in weights:
            raise ModelError(f"the split must include the active version {active.key}")
        total = sum(weights.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ModelError(f"traffic weights sum to {total:g}, must sum to 1")
        for version, weight in weights.items():
            if weight > 0:
                self.vouch(self.get(name, version))
        since = now_iso()
        updated = [
            replace(
                e,
                traffic=weights.get(e.version, 0.0),
                testing_since=since if e.status == "candidate" and weights.get(e.version) else None,
            )
            if e.name == name
            else e
            for e in self.entries()
        ]
        self.write(updated)
        return [e for e in updated if e.name == name]

    def promote(self, name: str, version: str) -> ModelEntry:
        """Make a version the active one with all traffic (after validating its file again); the
        previous active is archived."""
        chosen = self.get(name, version)
        if chosen.status == "active":
            raise ModelError(f"{chosen.key} is already active")
        _refuse_rejected(chosen, "promoted")
        self.vouch(chosen)
        current = self.active(name).version
        updated = []
        for e in self.entries():
            if e.name == name and e.version == version:
                e = replace(e, status="active", traffic=1.0, previous=current, testing_since=None)
            elif e.name == name and e.status == "active":
                e = replace(e, status="archived", traffic=0.0)
            elif e.name == name:
                e = replace(e, traffic=0.0, testing_since=None)
            updated.append(e)
        self.write(updated)
        return self.get(name, version)

    def rollback(self, name: str) -> ModelEntry:
        """End a test in favour of the active version (candidates with traffic are archived),
        or, with no test running, bring back the version the active one replaced. Returns the
        version that serves afterwards."""
        entries = self.entries()
        active = self.active(name)
        testing = [e for e in entries if e.name == name and e.status == "candidate" and e.traffic]
        if testing:
            updated = [
                replace(e, status="archived", traffic=0.0, testing_since=None)
                if e in testing
                else replace(e, traffic=1.0)
                if e == active
                else e
                for e in entries
            ]
            self.write(updated)
            return self.get(name, active.version)
        if active.previous is None:
            raise ModelError(f"nothing to roll back to: {active.key} replaced no version")
        previous = self.get(name, active.previous)
        return self.promote(name, previous.version)

    def reject(self, name: str, version: str) -> ModelEntry:
        """Keep a candidate the retrain gate refused, without traffic, as ``rejected``."""
        chosen = self.get(name, version)
        if chosen.status != "candidate" or chosen.traffic:
            raise ModelError(
                f"{chosen.key} is {chosen.status} with traffic {chosen.traffic:g}: only a "
                "candidate without traffic can be rejected"
            )
        self.write([replace(e, status="rejected") if e == chosen else e for e in self.entries()])
        return self.get(name, version)

    def active(self, name: str) -> ModelEntry:
        """The active version of a member."""
        found = [e for e in self.entries() if e.name == name and e.status == "active"]
        if not found:
            raise ModelError(f"no active {name!r} model in {self.path}")
        return found[0]

    def load_bytes(self, entry: ModelEntry) -> bytes:
        """The entry's file, after checking its checksum and feature version."""
        expected = feature_version_of(entry.name)
        if entry.feature_version != expected:
            raise ModelError(
                f"{entry.key} was trained on feature list {entry.feature_version}, this worker "
                f"computes {expected}: retrain it (`apex-stream models train`)"
            )
        if entry.path is None or entry.sha256 is None:
            raise ModelError(f"{entry.key} has no file")
        data = (self.folder / entry.path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise ModelError(
                f"checksum mismatch for {entry.key} ({entry.path}): manifest says "
                f"{entry.sha256[:12]}…, file is {digest[:12]}…; refusing to load it: restore the "
                "file, or register the new one as a new version"
            )
        return data

    def vouch(self, entry: ModelEntry) -> None:
        """Validate the registry's copy of a version (checksum and feature version first, then
        :func:`~apex_stream.inference.validation.validate`) before the manifest gives it
        traffic: a file changed or corrupted since it was registered is refused here, before
        any worker loads it."""
        if entry.name not in CATALOGUE:  # the stacking meta-learner: coefficients, no file
            return
        validate_model(entry.name, entry.version, self.load_bytes(entry), entry.feature_version)

    def add(self, entries: list[ModelEntry]) -> Manifest:
        """Add entries (replacing any with the same name and version) and rewrite the manifest."""
        current = self.entries() if self.path.exists() else []
        keys = {e.key for e in entries}
        return self.write([e for e in current if e.key not in keys] + entries)
