"""Sticky assignment of routes to the versions of a traffic split (A/B tests).

A route id is hashed (BLAKE2b, so every worker and every restart agrees) to a point in [0, 1),
and the route takes the version whose slice of the split holds it: a route keeps its version
for the whole test, members split alike serve the same routes together, and the share of
routes per version converges to the split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=200_000)
def route_point(route_id: str) -> float:
    """A route's stable position in [0, 1)."""
    digest = hashlib.blake2b(route_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign(route_ids: Sequence[str], weights: Sequence[float]) -> np.ndarray:
    """The arm (index into ``weights``) of every route; weights must sum to 1."""
    edges = np.cumsum(weights)
    if not math.isclose(edges[-1], 1.0, abs_tol=1e-9):
        raise ValueError(f"traffic weights must sum to 1, got {edges[-1]:.6g}")
    points = np.fromiter(map(route_point, route_ids), dtype=np.float64, count=len(route_ids))
    return np.minimum(np.searchsorted(edges, points, side="right"), len(edges) - 1)
