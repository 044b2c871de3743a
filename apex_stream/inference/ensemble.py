"""The ensemble: every member scores the same feature matrix once per micro-batch, then the
configured voting strategy decides. Shared by the stream agent and the HTTP scoring API, so
both score identically."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..features import FEATURES, impute
from ..learning.online import OnlineLearner
from ..settings import Settings
from ..voting import StackingParams, Vote, VotingConfig, vote
from .onnx_member import OnnxMember
from .registry import Registry
from .xgb_member import XGBoostMember


@dataclass(frozen=True)
class Scores:
    """One batch's member scores and the vote over them."""

    members: dict[str, np.ndarray]
    vote: Vote

    @cached_property
    def rows(self) -> list[dict[str, float]]:
        """Each opportunity's member scores as a dict (built once; predictions, the scored
        table and the HTTP API all need them)."""
        names = list(self.members)
        return [
            dict(zip(names, row, strict=True))
            for row in zip(*(s.tolist() for s in self.members.values()), strict=True)
        ]


def voting_config(settings: Settings, registry: Registry) -> VotingConfig:
    """Voting from settings; the stacking meta-learner's parameters come from the manifest."""
    stacking = None
    if settings.voting_strategy == "stacking":
        params = registry.active("stacking").params
        stacking = StackingParams(
            tuple(params["members"]), tuple(params["coef"]), float(params["intercept"])
        )
    return VotingConfig(
        strategy=settings.voting_strategy,
        threshold=settings.threshold,
        weights=dict(settings.voting_weights),
        online_weight=settings.online_weight,
        stacking=stacking,
    )


class Ensemble:
    """XGBoost, ONNX and the online learner, loaded only through the manifest."""

    def __init__(self, settings: Settings, online: OnlineLearner | None = None) -> None:
        registry = Registry(settings.models_dir)
        xgb_entry = registry.active("xgboost")
        onnx_entry = registry.active("onnx")
        self.xgboost = XGBoostMember(
            registry.load_bytes(xgb_entry),
            xgb_entry.version,
            device=settings.device,
            threads=settings.xgboost_threads,
        )
        self.onnx = OnnxMember(
            registry.load_bytes(onnx_entry),
            onnx_entry.version,
            device=settings.device,
            threads=settings.onnx_threads,
        )
        online_entry = registry.active("online")
        if online is None:
            online = OnlineLearner.restore(registry.load_bytes(online_entry))
        self.online = online
        self.voting = voting_config(settings, registry)
        #: each member's training means, which replace missing features before it scores
        self.means = {
            e.name: np.array(e.params.get("impute", [np.nan] * len(FEATURES)))
            for e in (xgb_entry, onnx_entry, online_entry)
        }

    @property
    def versions(self) -> dict[str, str]:
        return {m.name: m.version for m in (self.xgboost, self.onnx, self.online)}

    @property
    def providers(self) -> dict[str, str]:
        return {"xgboost": self.xgboost.device, "onnx": self.onnx.provider}

    def score(self, X: np.ndarray) -> Scores:
        members = {
            m.name: m.predict(impute(X, self.means[m.name]))
            for m in (self.xgboost, self.onnx, self.online)
        }
        return Scores(members, vote(members, self.voting))
