"""Model checks before traffic (interim copy, replaced by the validation branch)."""

from __future__ import annotations

from functools import cache

import numpy as np

from .members import Member
from .registry import ModelError


@cache
def reference_batch(width: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(64, width))


def check(member: Member, key: str, width: int) -> None:
    scores = np.asarray(member.predict(reference_batch(width)))
    ok = scores.shape == (64,) and bool(np.all((scores >= 0) & (scores <= 1)))
    if not ok:
        raise ModelError(f"{key} does not score probabilities on the reference batch")
