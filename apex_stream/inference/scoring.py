"""Scoring a batch of opportunities: features, every member once, the vote; and the batch's
predictions as Kafka payloads. The stream and the HTTP API score with the same :class:`Scorer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np

from ..events import Opportunity, Prediction
from ..features import FEATURE_VERSION, opportunity_features
from ..features.agent import MarketView
from ..features.opportunity import route_keys, route_rows
from ..features.route_forecast import RouteForecasts
from .ensemble import Ensemble, Scores
from .members import MEMBERS


class Scorer:
    """Features, ensemble and voting for a batch of opportunities."""

    def __init__(self, ensemble: Ensemble, view: MarketView) -> None:
        self.ensemble = ensemble
        self.view = view

    def score(
        self, opportunities: Sequence[Opportunity], threshold: float | None = None
    ) -> tuple[np.ndarray, Scores]:
        """The feature matrix and the ensemble's scores for a batch (at ``threshold`` instead of
        the configured one when given)."""
        X, scores, _ = self.score_routes(opportunities, threshold)
        return X, scores

    def score_routes(
        self, opportunities: Sequence[Opportunity], threshold: float | None = None
    ) -> tuple[np.ndarray, Scores, np.ndarray]:
        """:meth:`score`, plus the batch's (n, MAX_TOKENS) route rows in the market state, for
        what else reads the routes' tokens (their forecasts) without looking them up again."""
        keys = route_keys(opportunities)
        market = self.view.refresh(set(keys))
        rows = route_rows(opportunities, market, keys)
        X = opportunity_features(opportunities, market, rows=rows)
        return X, self.ensemble.score(X, [o.route_id for o in opportunities], threshold), rows


#: A Prediction built from values the batch already checked (finite scores and times), so
#: ``__post_init__``'s per-event checks are skipped; it encodes exactly as a Prediction.
_Checked = msgspec.defstruct(
    "Prediction", [], bases=(Prediction,), namespace={"__post_init__": lambda self: None}
)
_encoder = msgspec.json.Encoder()


def recommend(score: np.ndarray, decision: np.ndarray) -> tuple[list[str], list[float]]:
    """Seed 001's recommendation (EXECUTE when the vote executes, else SKIP) and confidence: the
    ensemble's probability that the recommendation is right (``score``, or ``1 - score``)."""
    return (
        np.where(decision, "EXECUTE", "SKIP").tolist(),
        np.where(decision, score, 1.0 - score).tolist(),
    )


def encode_predictions(
    opportunities: Sequence[Opportunity],
    X: np.ndarray,
    scores: Scores,
    latency_ms: np.ndarray,
    now: float,
    forecasts: RouteForecasts | None = None,
) -> list[bytes]:
    """Each opportunity's prediction, JSON-encoded in one call for the whole batch, with the
    features it was scored with (NaN, a missing feature, encodes as null) and its route's
    ``forecasts`` when given."""
    threshold = scores.voting.threshold
    rule = scores.voting.rule
    none: list[None] = [None] * len(opportunities)
    price_forecasts, volatility_forecast = forecasts or (none, none)
    recommendation, confidence = recommend(scores.vote.score, scores.vote.decision)
    rows = [
        _Checked(
            o.opportunity_id,
            o.route_id,
            o.chain,
            score,
            decision,
            threshold,
            strategy,
            member_scores,
            versions,
            latency,
            o.timestamp,
            now,
            advice,
            sure,
            FEATURE_VERSION,
            features,
            voters,
            expected,
            rule,
            price_forecasts=prices,
            volatility_forecast=volatility,
        )
        for (
            o,
            score,
            decision,
            strategy,
            member_scores,
            versions,
            latency,
            advice,
            sure,
            features,
            voters,
            expected,
            prices,
            volatility,
        ) in zip(
            opportunities,
            scores.vote.score.tolist(),
            scores.vote.decision.tolist(),
            scores.strategies,
            scores.rows,
            scores.version_rows,
            latency_ms.tolist(),
            recommendation,
            confidence,
            X.tolist(),
            scores.voters,
            scores.expected_profit_usd.tolist(),
            price_forecasts,
            volatility_forecast,
            strict=True,
        )
    ]
    return _encoder.encode_lines(rows).split(b"\n")[:-1]


def member_matrix(scores: Scores) -> tuple[np.ndarray, np.ndarray]:
    """Member scores (n, members) and the versions that produced them, in ``MEMBERS`` order."""
    n = len(scores.vote.score)
    matrix = np.column_stack([scores.members[m] for m in MEMBERS])
    versions = np.empty((n, len(MEMBERS)), object)
    for j, member in enumerate(MEMBERS):
        versions[:, j] = scores.versions[member]
    return matrix, versions
