"""The engine's 8 features: seed 002's ``POST /predict`` vector, as that document defines each.

Clients of seed 002's Hybrid ML Controller compute this vector themselves and send it as it is,
so the engine model is trained on these definitions, not on the pipeline's :data:`CLASSIC`
columns of the same names. Two differ:

- ``route_complexity`` counts the tokens of the closed route written with its start token
  repeated (USDC → WMATIC → USDC is 3); the pipeline counts distinct tokens (2), which is the
  number of hops, so the engine's is one more.
- ``time_of_day`` is the fraction of the UTC day, in [0, 1) (0.5 is noon); the pipeline's is the
  UTC hour, in [0, 24).

The other six are the pipeline's: quoted net profit (USD), expected output / input amount, gas
estimate / 1e6, the scanner's confidence, distinct DEXes on the route, input amount / 1e3 (USD).
"""

from __future__ import annotations

import numpy as np

from .opportunity import FEATURES

#: Seed 002's feature order (its "Feature Engineering" section), the engine's column order.
ENGINE_FEATURES = (
    "profit_usd",
    "profit_ratio",
    "route_complexity",
    "gas_millions",
    "confidence_score",
    "time_of_day",
    "dex_count",
    "input_amount_thousands",
)
#: The engine model's feature-list version, recorded in its manifest entry; the registry refuses
#: an engine model trained on another list (as it refuses members off ``FEATURE_VERSION``).
ENGINE_FEATURE_VERSION = "seed002-1.0"

#: each engine feature's column in the pipeline's matrix (the names are the pipeline's)
_COLUMNS = [FEATURES.index(name) for name in ENGINE_FEATURES]
_ROUTE, _TIME = ENGINE_FEATURES.index("route_complexity"), ENGINE_FEATURES.index("time_of_day")


def engine_features(X: np.ndarray) -> np.ndarray:
    """Seed 002's (n, 8) float64 vectors from the pipeline's feature matrix (columns of
    :data:`FEATURES`): the history the engine model is trained on."""
    E = X[:, _COLUMNS].astype(np.float64)
    E[:, _ROUTE] += 1.0  # the start token again, closing the route
    E[:, _TIME] /= 24.0
    return E
