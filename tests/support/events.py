"""Valid events for tests, built with only what a test cares about."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from apex_stream.events import Opportunity, Outcome, Prediction


def prediction(i: int, chain: str = "ethereum", route: str = "r1", score: float = 0.5):
    """Prediction ``p{i}``: decision is score > 0.5, stamped now."""
    now = time.time()
    return Prediction(
        opportunity_id=f"p{i}",
        route_id=route,
        chain=chain,
        score=score,
        decision=score > 0.5,
        threshold=0.5,
        strategy="weighted",
        model_scores={"xgboost": score, "onnx": score},
        model_versions={"xgboost": "1.0.0", "onnx": "1.0.0"},
        latency_ms=2.0,
        opportunity_timestamp=now,
        timestamp=now,
        recommendation="EXECUTE" if score > 0.5 else "SKIP",
        confidence=max(score, 1 - score),
    )


def opportunity(i: int, route: str, tokens: list[str], chain: str = "ethereum") -> Opportunity:
    """Opportunity ``o{i}`` over ``tokens`` on uniswap, stamped now."""
    return Opportunity(
        opportunity_id=f"o{i}",
        route_id=route,
        chain=chain,
        tokens=tokens,
        dexes=["uniswap"] * len(tokens),
        input_amount=1000.0,
        expected_output=1010.0,
        gas_estimate=200_000,
        profit_usd=5.0,
        confidence_score=0.8,
        timestamp=time.time(),
    )


def prediction_for(o: Opportunity, score: float, **fields: Any) -> Prediction:
    """A prediction of ``o`` with ``score`` (decision: above 0.5) by xgboost 1.0.0, made 10 ms
    after it; ``fields`` replace any of these."""
    return Prediction(
        **{
            "opportunity_id": o.opportunity_id,
            "route_id": o.route_id,
            "chain": o.chain,
            "score": score,
            "decision": score > 0.5,
            "threshold": 0.5,
            "strategy": "weighted",
            "model_scores": {"xgboost": score},
            "model_versions": {"xgboost": "1.0.0"},
            "latency_ms": 3.0,
            "opportunity_timestamp": o.timestamp,
            "timestamp": o.timestamp + 0.01,
            "recommendation": "EXECUTE" if score > 0.5 else "SKIP",
            "confidence": max(score, 1 - score),
        }
        | fields
    )


def outcome_for(o: Opportunity, success: bool) -> Outcome:
    """The outcome of ``o``, executed now: 4 USD won, or 1 USD of gas lost."""
    return Outcome(
        opportunity_id=o.opportunity_id,
        route_id=o.route_id,
        chain=o.chain,
        success=success,
        realized_profit_usd=4.0 if success else -1.0,
        gas_used=150_000,
        gas_cost_usd=1.0,
        executed_at=time.time(),
    )


class FileOpeningPickle:
    """A pickle that creates ``path`` when unpickled: what a writer of a topic could send to a
    reader that unpickles it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))
