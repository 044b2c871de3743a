"""The engine model behind seed 002's ``POST /predict``: a success probability from the 8 features
a client computes itself (:mod:`apex_stream.features.engine` defines each).

It is versioned in the manifest like the members (name ``engine``, its own feature list, see
:data:`apex_stream.inference.members.ENGINE`) and loaded with every manifest revision beside the
ensemble (``Ensemble.engine``), but it takes no part in the vote: the stream scores with the
members, whose features a client cannot send.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ApexStreamError
from ..features.engine import ENGINE_FEATURES

if TYPE_CHECKING:
    from .providers import Device

_ORDER = ", ".join(ENGINE_FEATURES)


class FeatureVectorError(ApexStreamError, ValueError):
    """A feature vector the engine cannot score; the message says which feature and why."""


def engine_vector(features: object) -> np.ndarray:
    """A request's ``features`` as a float64 (8,) vector: exactly 8 finite numbers in seed 002's
    order, or :class:`FeatureVectorError` naming the first problem."""
    if isinstance(features, str | bytes) or not isinstance(features, Sequence):
        raise FeatureVectorError(
            f"features must be a list of {len(ENGINE_FEATURES)} numbers ({_ORDER}), "
            f"got {type(features).__name__}"
        )
    if len(features) != len(ENGINE_FEATURES):
        raise FeatureVectorError(
            f"features must be exactly {len(ENGINE_FEATURES)} numbers ({_ORDER}), "
            f"got {len(features)}"
        )
    for i, (name, value) in enumerate(zip(ENGINE_FEATURES, features, strict=True)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise FeatureVectorError(f"features[{i}] ({name}) is {value!r}, not a number")
        if not math.isfinite(value):
            raise FeatureVectorError(f"features[{i}] ({name}) is {value}, must be finite")
    return np.array(features, dtype=np.float64)


class EngineModel:
    """Success probability of an opportunity from seed 002's 8 features (a gradient-boosted
    tree ensemble, scored like the XGBoost member)."""

    name = "engine"
    #: what seed 002's ``GET /status`` reports as ``model_type``
    model_type = "xgboost"

    def __init__(self, model: bytes, version: str, *, device: Device = "auto", threads: int = 1):
        from .xgb_member import XGBoostMember

        self.version = version
        self._trees = XGBoostMember(model, version, device=device, threads=threads)

    @property
    def provider(self) -> str:
        """``cuda`` or ``cpu``, as for the XGBoost member."""
        return self._trees.provider

    @property
    def n_features(self) -> int:
        """The width of the matrix the model was trained on (8 for a model that fits)."""
        return self._trees.n_features

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability of success for every row of an (n, 8) matrix, as float64 (n,)."""
        if X.ndim != 2 or X.shape[1] != len(ENGINE_FEATURES):
            raise FeatureVectorError(
                f"the engine scores (n, {len(ENGINE_FEATURES)}) matrices ({_ORDER}), "
                f"got shape {X.shape}"
            )
        return self._trees.predict(X)
