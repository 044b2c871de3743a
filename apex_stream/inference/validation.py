"""Validation before traffic: a model file gets traffic only after it loads as its member's type
and scores a realistic batch of its feature list with finite probabilities.

The registry runs :func:`validate` when a file is registered and again, from the registry's copy,
when a version is given traffic (an A/B split, a promotion), so a file changed after it was
registered is refused before the manifest names it; workers run :func:`check` on every member
they load before serving a new revision. Each refusal is a
:class:`~apex_stream.errors.ModelError` (also ``registry.ModelError``) that says what is wrong and
what to do.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from ..errors import ModelError
from ..features import FEATURE_VERSION, FEATURES, MarketState, opportunity_features
from ..features.engine import ENGINE_FEATURE_VERSION, ENGINE_FEATURES, engine_features
from ..simulator import MarketSimulator
from .members import CATALOGUE, Member

#: How many features each feature list has: a model must score rows of that width.
FEATURE_WIDTHS = {FEATURE_VERSION: len(FEATURES), ENGINE_FEATURE_VERSION: len(ENGINE_FEATURES)}

#: The simulator seed and length of the reference batch (fixed: the batch is the same everywhere)
SEED, OPPORTUNITIES = 13, 256
_LOCATION = re.compile(r"^\[[\d:]+\] \S+:\d+: ")


@cache
def reference_batch(width: int) -> np.ndarray:
    """Deterministic, read-only (n, ``width``) float64 rows, as a worker hands them to a member.

    Why these rows: a model must be judged on what it will score. Rows of zeros (or random
    normals) are far outside the training data, where a broken model can look fine and a good
    one can look broken. So the rows are the worker's own: a fixed-seed simulator run's first
    256 opportunities featurised against its market state exactly as the stream does it (about
    0.1 s, once per process). The first rows arrive before the market has prices, so their
    market features are missing; they are imputed with the batch's column means, as a worker
    imputes with a model's training means, and one more row is all means (an opportunity with
    every feature missing). The engine's rows are the same opportunities as seed 002's 8
    features.
    """
    X = _opportunity_rows()
    rows = X if _list_of(width) == FEATURE_VERSION else engine_features(X)
    rows.setflags(write=False)  # one cached array for every caller: no caller may change it
    return rows


@cache
def _opportunity_rows() -> np.ndarray:
    market = MarketState()
    blocks = []
    for step in MarketSimulator(SEED).run(opportunities=OPPORTUNITIES):
        market.update(step.prices)
        if step.opportunities:
            blocks.append(opportunity_features(step.opportunities, market))
    X = np.vstack(blocks).astype(np.float64)
    means = np.nanmean(X, axis=0)
    return np.vstack([np.where(np.isnan(X), means, X), means])


def check(member: Member, key: str, width: int) -> None:
    """Refuse (:class:`ModelError` naming the fix) a loaded model that does not score
    :func:`reference_batch` of ``width`` with one finite probability in [0, 1] per row."""
    features = _list_of(width)
    expects = getattr(member, "n_features", None)  # every catalogued member says; fakes may not
    if expects is not None and expects != width:
        raise ModelError(
            f"{key} expects {expects} features, but the worker computes {width} (feature list "
            f"{features}): retrain it on that list with `apex-stream models train`"
        )
    X = reference_batch(width)
    try:
        scores = member.predict(X)
    except Exception as exc:  # noqa: BLE001 - whatever a member raises, it cannot serve
        raise ModelError(
            f"{key} fails to score {len(X)} reference rows of feature list {features} "
            f"({width} features): {_reason(exc)}; register a model trained on that list "
            "(`apex-stream models train`)"
        ) from None
    if not isinstance(scores, np.ndarray) or scores.dtype.kind != "f" or scores.shape != (len(X),):
        got = (
            f"{scores.dtype} of shape {scores.shape}"
            if isinstance(scores, np.ndarray)
            else type(scores).__name__
        )
        raise ModelError(
            f"{key} returns {got} for {len(X)} rows, not one float probability per row "
            f"(float of shape ({len(X)},)): register a model with a single probability output"
        )
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ModelError(
            f"{key} scores NaN or infinity for {int(bad.sum())} of {len(X)} reference rows "
            f"(first row {int(np.argmax(bad))}): it must return a finite probability for every "
            "row; retrain it (`apex-stream models train`)"
        )
    outside = (scores < 0) | (scores > 1)
    if outside.any():
        raise ModelError(
            f"{key} scores {int(outside.sum())} of {len(X)} reference rows outside [0, 1] "
            f"(min {scores.min():.4g}, max {scores.max():.4g}): it must return probabilities, "
            "so train a classifier (xgboost objective binary:logistic, a sigmoid output for "
            "onnx), as `apex-stream models train` does"
        )


def validate(name: str, version: str, blob: bytes, feature_version: str) -> Member:
    """Load a model file as ``name``'s type on the CPU and :func:`check` it; the member is
    returned, so a caller that serves it need not load it twice."""
    spec = CATALOGUE[name]
    key = f"{name}@{version}"
    if feature_version != spec.feature_version:
        raise ModelError(
            f"{key}: feature-list mismatch: it is declared as trained on feature list "
            f"{feature_version}, but {name} models score feature list {spec.feature_version} "
            f"({FEATURE_WIDTHS[spec.feature_version]} features), the one this worker computes: "
            f"retrain it on {spec.feature_version} (`apex-stream models train`), or leave out "
            "--feature-version when it was trained on it"
        )
    try:
        member = spec.load(blob, version, "cpu", 1)
    except Exception as exc:  # noqa: BLE001 - any loader's failure means the same: refused
        raise ModelError(
            f"{key} does not load as a {spec.type} model: {_reason(exc)}; register a file "
            f"saved by {spec.saved_by}"
        ) from None
    check(member, key, FEATURE_WIDTHS[spec.feature_version])
    return member


def _list_of(width: int) -> str:
    """The feature list (version) of a width."""
    for version, w in FEATURE_WIDTHS.items():
        if w == width:
            return version
    known = ", ".join(f"{v} has {w}" for v, w in FEATURE_WIDTHS.items())
    raise ValueError(f"no feature list has {width} features ({known})")


def _reason(exc: Exception) -> str:
    """The exception's first line, without xgboost's ``[12:24:46] /src/file.cc:1513:`` prefix."""
    lines = str(exc).strip().splitlines()
    first = _LOCATION.sub("", lines[0]) if lines else "no message"
    return f"{type(exc).__name__}: {first}"
