"""The ensemble: every member scores the same feature matrix once per micro-batch, then the
configured voting strategy decides. Shared by the stream agent and the HTTP scoring API, so
both score identically.

During an A/B test a member has several serving versions: each opportunity's route is hashed to
one of them by the traffic split (:func:`apex_stream.inference.routes.assign`), every version
scores only its own rows, and the scores record which version produced each row.

Failover: a member version that fails to load (or to score the reference batch) when a worker
starts is :class:`Unavailable`; one that raises or answers anything but probabilities while
scoring is left out for the rows it failed. Either way the vote re-weights over the members that
answered each row (:mod:`apex_stream.inference.voting`), the failure is reported in
``Scores.failures`` and ``Ensemble.failures``, and a row no member answered is scored by
:func:`apex_stream.inference.heuristic.heuristic`. A live reload is stricter: a version the new
revision adds must load and pass :func:`apex_stream.inference.validation.check`, or the worker
keeps serving its current revision (:class:`ModelError`).

The engine model (seed 002's ``/predict``) is loaded with every revision too, outside the vote;
a manifest without one, or an engine file that fails to load, leaves ``Ensemble.engine`` None
with the reason logged, and the members score as ever.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, cast

import numpy as np

from ..features import FEATURES, impute
from ..features.engine import ENGINE_FEATURES
from ..settings import Settings
from .decision import expected_profit, expected_profit_gate, trade_values
from .heuristic import HEURISTIC, heuristic
from .members import ENGINE, SPECS, VOTING_WEIGHTS, Member, MemberSpec
from .registry import Manifest, ModelEntry, ModelError, Registry
from .routes import assign
from .validation import check
from .voting import StackingParams, Vote, VotingConfig, vote

if TYPE_CHECKING:
    from .engine import EngineModel
    from .online_member import OnlineLearner
    from .onnx_member import OnnxMember
    from .providers import Device
    from .xgb_member import XGBoostMember

log = logging.getLogger("apex_stream.inference")


class Unavailable:
    """A member version that did not load: it answers no row, so the vote goes on without it."""

    provider = "unavailable"

    def __init__(self, name: str, version: str, reason: str) -> None:
        self.name, self.version, self.reason = name, version, reason

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), np.nan)


def answer(model: Member, X: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A member's scores with NaN for the rows it did not answer, and why (None: it answered
    every row). Whatever a member raises or returns, the batch goes on."""
    if isinstance(model, Unavailable):  # reported when it failed to load
        return model.predict(X), None
    try:
        scores = np.asarray(model.predict(X), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - a failing member must not fail the batch
        return np.full(len(X), np.nan), f"{type(exc).__name__}: {_first_line(exc)}"
    if scores.shape != (len(X),):
        return np.full(len(X), np.nan), f"returned shape {scores.shape} for {len(X)} rows"
    bad = ~((scores >= 0.0) & (scores <= 1.0))  # NaN is bad too
    if bad.any():
        return np.where(bad, np.nan, scores), f"{int(bad.sum())} of {len(X)} scores not in [0, 1]"
    return scores, None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:300]


@dataclass(frozen=True)
class Arms:
    """The serving versions of one member (the active one first), their training means, their
    training ranges (None: recorded before ranges were) and their traffic split."""

    name: str
    models: tuple[Member, ...]
    means: tuple[np.ndarray, ...]
    weights: tuple[float, ...]
    bounds: tuple[tuple[np.ndarray, np.ndarray] | None, ...] = ()

    def inputs(self, X: np.ndarray, k: int) -> np.ndarray:
        """Version ``k``'s input: missing features imputed with its training means, and every
        feature clipped to the range it took in training, so a network or a linear model does
        not extrapolate without bound from a short history (a tree scores the same)."""
        x = impute(X, self.means[k])
        bounds = self.bounds[k] if k < len(self.bounds) else None
        return x if bounds is None else np.clip(x, *bounds)

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(m.version for m in self.models)

    def predict(
        self, X: np.ndarray, route_ids: Sequence[str] | None, failures: dict[str, str]
    ) -> tuple[np.ndarray, str | np.ndarray]:
        """Scores of every row (NaN where a version failed, with the reason added to
        ``failures`` under its key) and the version that produced them (one string when a
        single version scored the whole batch, else an array per row)."""
        if len(self.models) == 1 or route_ids is None:
            model = self.models[0]
            scores, failed = answer(model, self.inputs(X, 0))
            if failed:
                failures[f"{self.name}@{model.version}"] = failed
            return scores, model.version
        arm = assign(route_ids, self.weights)
        out = np.empty(len(X))
        for k, model in enumerate(self.models):
            rows = np.flatnonzero(arm == k)
            if len(rows):
                out[rows], failed = answer(model, self.inputs(X[rows], k))
                if failed:
                    failures[f"{self.name}@{model.version}"] = failed
        return out, np.asarray(self.versions, dtype=object)[arm]


@dataclass(frozen=True)
class Scores:
    """One batch's member scores (NaN where a member did not answer), the versions that
    produced them, the vote over them, and the members that failed with why."""

    members: dict[str, np.ndarray]
    vote: Vote
    versions: dict[str, str | np.ndarray]
    voting: VotingConfig
    #: ``member@version`` -> why it failed this batch (empty: every member answered)
    failures: dict[str, str]
    #: each opportunity's expected profit at its final score (USD; NaN: a value was missing)
    expected_profit_usd: np.ndarray
    #: the rows no member answered, scored by the heuristic (None: there were none)
    fallback: np.ndarray | None = None

    @cached_property
    def complete(self) -> bool:
        """Whether every member answered every row (the common case, and the fast one)."""
        return not any(np.isnan(s).any() for s in self.members.values())

    @cached_property
    def rows(self) -> list[dict[str, float]]:
        """Each opportunity's scores of the members that answered it, as a dict (built once;
        predictions, the scored table and the HTTP API all need them)."""
        names = list(self.members)
        rows = [
            dict(zip(names, row, strict=True))
            for row in zip(*(s.tolist() for s in self.members.values()), strict=True)
        ]
        if self.complete:
            return rows
        return [{m: v for m, v in row.items() if v == v} for row in rows]  # NaN != NaN

    @cached_property
    def version_rows(self) -> list[dict[str, str]]:
        """Each opportunity's versions of the members that answered it (one shared dict when
        no member is split and every member answered)."""
        fixed = {m: v for m, v in self.versions.items() if isinstance(v, str)}
        split = {m: v.tolist() for m, v in self.versions.items() if not isinstance(v, str)}
        if not split:
            rows = [fixed] * len(self.vote.score)
        else:
            names = list(split)
            rows = [
                fixed | dict(zip(names, vs, strict=True))
                for vs in zip(*split.values(), strict=True)
            ]
        if self.complete:
            return rows
        return [{m: row[m] for m in scored} for row, scored in zip(rows, self.rows, strict=True)]

    @cached_property
    def voters(self) -> list[list[str]]:
        """The members that answered each opportunity, in vote order (empty: the heuristic
        scored it)."""
        if self.complete:
            return [list(self.members)] * len(self.vote.score)
        return [list(row) for row in self.rows]

    @cached_property
    def strategies(self) -> list[str]:
        """The strategy that scored each opportunity: the configured one, ``weighted`` where
        stacking missed one of its members (the vote re-weighted over those that answered), or
        the heuristic."""
        strategy = self.voting.strategy
        if self.complete:
            return [strategy] * len(self.vote.score)
        if strategy == "stacking":
            return [
                HEURISTIC if not row else strategy if len(row) == len(self.members) else "weighted"
                for row in self.rows
            ]
        return [HEURISTIC if not row else strategy for row in self.rows]


def voting_config(settings: Settings, manifest: Manifest) -> VotingConfig:
    """Voting from settings; the stacking meta-learner's parameters come from the manifest. A
    manifest without an active meta-learner (models registered by hand) votes weighted, with
    the reason logged, rather than refusing to score."""
    strategy, stacking = settings.voting_strategy, None
    if strategy == "stacking":
        try:
            params = manifest.active("stacking").params
        except ModelError as exc:
            log.warning("stacking vote unavailable (%s): voting weighted instead", exc)
            strategy = "weighted"
        else:
            stacking = StackingParams(
                tuple(params["members"]), tuple(params["coef"]), float(params["intercept"])
            )
    return VotingConfig(
        strategy=strategy,
        threshold=settings.threshold,
        weights=dict(settings.voting_weights or VOTING_WEIGHTS),
        online_weight=settings.online_weight,
        stacking=stacking,
        rule=settings.decision_rule,
        min_expected_profit_usd=settings.min_expected_profit_usd,
    )


def training_bounds(entry: ModelEntry) -> tuple[np.ndarray, np.ndarray] | None:
    """The lowest and highest value of each feature in the member's training rows (None for
    versions trained before they were recorded)."""
    bounds = entry.params.get("bounds")
    if bounds is None:
        return None
    return np.array(bounds[0], dtype=np.float64), np.array(bounds[1], dtype=np.float64)


def training_means(entry: ModelEntry) -> np.ndarray:
    """The member's training means, which replace missing features before it scores."""
    return np.array(entry.params["impute"], dtype=np.float64)


def serving(manifest: Manifest, spec: MemberSpec) -> tuple[list[ModelEntry], tuple[float, ...]]:
    """The versions of a member that take traffic (the active one first) and their weights; a
    member that cannot be split serves its active version alone."""
    if spec.splittable:
        entries = manifest.serving(spec.name)
        return entries, tuple(e.traffic for e in entries)
    return [manifest.active(spec.name)], (1.0,)


def load_member(registry: Registry, entry: ModelEntry, *, device: Device, threads: int) -> Member:
    """One version of a member (checksum and feature version verified on loading)."""
    return SPECS[entry.name].load(registry.load_bytes(entry), entry.version, device, threads)


def load_engine(
    settings: Settings,
    registry: Registry,
    manifest: Manifest,
    previous: EngineModel | None,
    *,
    strict: bool = False,
) -> EngineModel | None:
    """The manifest's active engine model (``previous`` when it is that version already), or
    None with the reason logged: the engine serves seed 002's ``/predict`` alone, so a missing
    or broken one must not stop the members from scoring the stream. ``strict`` (a live
    reload): a new version that fails raises :class:`ModelError`, keeping the served one."""
    try:
        entry = manifest.active(ENGINE.name)
    except ModelError as exc:
        log.warning("no engine model, seed 002's /predict is unavailable: %s", exc)
        return None
    if previous is not None and previous.version == entry.version:
        return previous
    try:
        blob = registry.load_bytes(entry)
        model = cast(
            "EngineModel",
            ENGINE.load(blob, entry.version, settings.device, ENGINE.threads(settings)),
        )
        check(model, entry.key, len(ENGINE_FEATURES))
    except Exception as exc:  # whatever failed, the stream scores without it
        if strict:
            raise ModelError(f"{entry.key} did not load: {type(exc).__name__}: {exc}") from exc
        log.error(
            "engine model %s not loaded, seed 002's /predict is unavailable: %s", entry.key, exc
        )
        return None
    log.info("engine model %s loaded (%s on %s)", entry.key, model.model_type, model.provider)
    return model


class Ensemble:
    """Every member of the catalogue at one manifest revision, and the engine model beside them,
    loaded only through the manifest (checksums and feature versions verified).

    ``strict`` (a live reload): a version this revision adds that fails to load or to pass the
    reference check raises :class:`ModelError`, so the worker keeps its current revision.
    Otherwise (a worker starting) it is :class:`Unavailable`, listed in ``failures``.
    """

    def __init__(
        self,
        settings: Settings,
        manifest: Manifest | None = None,
        previous: Ensemble | None = None,
        *,
        strict: bool = False,
    ) -> None:
        registry = Registry(settings.models_dir)
        manifest = manifest or registry.manifest()
        self.revision = manifest.revision
        #: ``member@version`` -> why it did not load (it answers no row)
        self.failures: dict[str, str] = {}
        # Versions are immutable once registered, so the previous revision's models are reused;
        # the online learner among them is the live one, which keeps learning across revisions.
        # One that did not load is tried again, and may fail again without refusing a reload.
        reusable = [m for a in previous.arms.values() for m in a.models] if previous else []
        loaded = {(m.name, m.version): m for m in reusable if not isinstance(m, Unavailable)}
        retried = {(m.name, m.version) for m in reusable if isinstance(m, Unavailable)}

        def load(entry: ModelEntry) -> Member:
            if (entry.name, entry.version) in loaded:
                return loaded[entry.name, entry.version]
            try:
                threads = SPECS[entry.name].threads(settings)
                member = load_member(registry, entry, device=settings.device, threads=threads)
                check(member, entry.key, len(FEATURES))
            except Exception as exc:  # whatever failed, the others score
                reason = f"{type(exc).__name__}: {_first_line(exc)}"
                if strict and (entry.name, entry.version) not in retried:
                    raise ModelError(f"{entry.key} did not load: {reason}") from exc
                log.error("%s left out of the vote, it did not load: %s", entry.key, reason)
                self.failures[entry.key] = reason
                return Unavailable(entry.name, entry.version, reason)
            return member

        self.arms: dict[str, Arms] = {}
        for spec in SPECS.values():
            entries, weights = serving(manifest, spec)
            models = [load(e) for e in entries]
            # a candidate that did not load takes no traffic: its routes go to the versions
            # that did, so an A/B test compares versions that score
            keep = [k for k, m in enumerate(models) if k == 0 or not isinstance(m, Unavailable)]
            total = sum(weights[k] for k in keep)
            self.arms[spec.name] = Arms(
                spec.name,
                tuple(models[k] for k in keep),
                tuple(training_means(entries[k]) for k in keep),
                tuple(weights[k] / total if total > 0 else float(k == 0) for k in keep),
                tuple(training_bounds(entries[k]) for k in keep),
            )
        self.voting = voting_config(settings, manifest)
        #: seed 002's ``/predict`` model (None: the manifest has none, or it failed to load)
        self.engine: EngineModel | None = load_engine(
            settings, registry, manifest, previous.engine if previous else None, strict=strict
        )

    # the arms hold Members; each member's loader in SPECS builds the class named here

    @property
    def xgboost(self) -> XGBoostMember:
        """The active XGBoost version."""
        return cast("XGBoostMember", self.arms["xgboost"].models[0])

    @property
    def onnx(self) -> OnnxMember:
        """The active ONNX version."""
        return cast("OnnxMember", self.arms["onnx"].models[0])

    @property
    def online(self) -> OnlineLearner | None:
        """The live online learner (the worker teaches it outcomes); None when it did not load."""
        model = self.arms["online"].models[0]
        return None if isinstance(model, Unavailable) else cast("OnlineLearner", model)

    @property
    def online_means(self) -> np.ndarray:
        """The online learner's training means, which also impute the outcomes it learns."""
        return self.arms["online"].means[0]

    @property
    def means(self) -> dict[str, np.ndarray]:
        """Each member's active version's training means."""
        return {name: a.means[0] for name, a in self.arms.items()}

    @property
    def versions(self) -> dict[str, str]:
        """The active version of every member."""
        return {name: a.versions[0] for name, a in self.arms.items()}

    @property
    def traffic(self) -> dict[str, dict[str, float]]:
        """Every serving version of every member with its traffic weight."""
        return {
            name: dict(zip(a.versions, a.weights, strict=True)) for name, a in self.arms.items()
        }

    def describe(self) -> str:
        """The serving versions with their traffic, and the engine's version, for logs."""
        members = ", ".join(
            f"{name} " + " / ".join(f"{v} ({w:.0%})" for v, w in split.items())
            for name, split in self.traffic.items()
        )
        return f"{members}; engine {self.engine.version if self.engine else 'none'}"

    @property
    def providers(self) -> dict[str, str]:
        """Where each member's active version scores."""
        return {name: a.models[0].provider for name, a in self.arms.items()}

    def score(
        self,
        X: np.ndarray,
        route_ids: Sequence[str] | None = None,
        threshold: float | None = None,
    ) -> Scores:
        """Every member's scores and the vote. ``route_ids`` assign rows to versions during an
        A/B test; without them (backtests) the active versions score every row. ``threshold``
        replaces the configured one for this call (an API request's own). A member that fails
        is left out of the rows it failed (``Scores.failures`` says why); rows no member
        answered are scored by the heuristic. Every row gets its expected profit at its final
        score, and the configured decision rule decides (``VotingConfig.rule``)."""
        members: dict[str, np.ndarray] = {}
        versions: dict[str, str | np.ndarray] = {}
        failures: dict[str, str] = {}
        for name, arms in self.arms.items():
            members[name], versions[name] = arms.predict(X, route_ids, failures)
        voting = self.voting if threshold is None else replace(self.voting, threshold=threshold)
        result = vote(members, voting)
        fallback = np.isnan(result.score)
        if fallback.any():
            rule = heuristic(X)
            result = Vote(
                np.where(fallback, rule, result.score),
                np.where(fallback, rule > voting.threshold, result.decision),
            )
        expected = expected_profit(result.score, *trade_values(X))
        if voting.rule == "expected_profit":
            decision = expected_profit_gate(expected, voting.min_expected_profit_usd)
            result = Vote(result.score, decision)
        return Scores(
            members,
            result,
            versions,
            voting,
            failures,
            expected,
            fallback if fallback.any() else None,
        )
