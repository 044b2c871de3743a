"""The catalogue of ensemble members: member names, manifest types, file suffixes, loaders, A/B
splitting, thread settings and default voting weights are all read from :data:`SPECS`.

Adding a member is one class with the :class:`Member` surface (in a module of its own here) and
one :class:`MemberSpec` in :data:`SPECS`; the registry, the ensemble, the scored state, learning,
backtests and retraining pick it up from there. ``models train`` also needs its trainer.

:data:`ENGINE` (seed 002's ``/predict`` model) is specified the same way but kept out of
:data:`SPECS`: the registry versions it (:data:`CATALOGUE`) and the ensemble loads it beside the
members, yet it never votes, is never A/B split and has no column in the scored state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..features import FEATURE_VERSION
from ..features.engine import ENGINE_FEATURE_VERSION

if TYPE_CHECKING:
    import numpy as np

    from ..settings import Settings
    from .providers import Device


class Member(Protocol):
    """What every member offers the ensemble."""

    name: str
    version: str

    @property
    def provider(self) -> str:
        """Where it scores: ``cpu`` or ``cuda`` for xgboost, the onnxruntime execution provider
        for onnx, ``cpu`` for the online learner."""
        ...

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability of success for every row of ``X`` (n, F), as float64 (n,)."""
        ...


#: A member from its file's bytes (already checksum-verified), version, device and threads.
Loader = Callable[[bytes, str, "Device", int], Member]


@dataclass(frozen=True)
class MemberSpec:
    """One model of the catalogue (an ensemble member, or :data:`ENGINE`) as the rest of
    apex-stream knows it."""

    name: str
    type: str  # the manifest entry's ``type``
    suffix: str  # of its model files
    load: Loader
    #: whether traffic can be split between its versions (A/B tests); the online learner is one
    #: live model per worker (it keeps learning), so it is never split
    splittable: bool
    threads_setting: str | None  # the Settings field with its thread count (None: 1)
    #: its default weight in the weighted vote; None: blended in by ``online_weight`` instead
    #: (the online member), or no vote at all (:data:`ENGINE`)
    vote_weight: float | None
    #: what writes a file of this type: a registration that does not load is told to register
    #: "a file saved by" this
    saved_by: str
    #: the feature list its models are trained on (the registry refuses others)
    feature_version: str = FEATURE_VERSION

    def threads(self, settings: Settings) -> int:
        return getattr(settings, self.threads_setting) if self.threads_setting else 1


# Member libraries (xgboost, onnxruntime, river) take seconds to import: they load with the first
# model, so the registry and the CLI read this catalogue without them.


def _xgboost(model: bytes, version: str, device: Device, threads: int) -> Member:
    from .xgb_member import XGBoostMember

    return XGBoostMember(model, version, device=device, threads=threads)


def _onnx(model: bytes, version: str, device: Device, threads: int) -> Member:
    from .onnx_member import OnnxMember

    return OnnxMember(model, version, device=device, threads=threads)


def _online(model: bytes, version: str, device: Device, threads: int) -> Member:
    """The snapshot carries its own version; numpy needs no device or thread setting."""
    from .online_member import OnlineLearner

    return OnlineLearner.restore(model)


def _engine(model: bytes, version: str, device: Device, threads: int) -> Member:
    from .engine import EngineModel

    return EngineModel(model, version, device=device, threads=threads)


_BOOSTER = (
    "xgboost's Booster.save_model (.ubj or .json) with objective binary:logistic, as "
    "`apex-stream models train` writes"
)
_MLP = (
    "onnx with one float input [N, features] and one probability per row, as "
    "`apex-stream models train` writes (onnx_member.build_mlp_onnx)"
)
_SNAPSHOT = "OnlineLearner.snapshot (JSON), as `apex-stream models train` writes"

SPECS: dict[str, MemberSpec] = {
    spec.name: spec
    for spec in (
        MemberSpec(
            "xgboost", "xgboost-booster", "ubj", _xgboost, True, "xgboost_threads", 0.6, _BOOSTER
        ),
        MemberSpec("onnx", "onnx-mlp", "onnx", _onnx, True, "onnx_threads", 0.4, _MLP),
        MemberSpec("online", "river-logreg", "json", _online, False, None, None, _SNAPSHOT),
    )
}
#: Every member, in the order of the scored state's member columns.
MEMBERS = tuple(SPECS)
#: The members whose versions can be A/B tested (and are retrained from stored history).
SPLITTABLE = tuple(name for name, spec in SPECS.items() if spec.splittable)
#: The weighted vote's default weights (``APEX_VOTING_WEIGHTS``).
VOTING_WEIGHTS = {n: s.vote_weight for n, s in SPECS.items() if s.vote_weight is not None}
#: Seed 002's ``/predict`` model: versioned and loaded like a member, outside the ensemble.
ENGINE = MemberSpec(
    name="engine",
    type="xgboost-booster",
    suffix="ubj",
    load=_engine,
    splittable=False,
    threads_setting="xgboost_threads",
    vote_weight=None,
    saved_by=(
        "xgboost's Booster.save_model (.ubj or .json) with objective binary:logistic on seed "
        "002's 8 features, as `apex-stream models train --engine-only` writes"
    ),
    feature_version=ENGINE_FEATURE_VERSION,
)
#: Every model the registry versions by name: the members and the engine.
CATALOGUE: dict[str, MemberSpec] = SPECS | {ENGINE.name: ENGINE}
