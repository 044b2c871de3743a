"""Fixtures of the inference tests."""

from __future__ import annotations

import numpy as np
import pytest

from apex_stream.features import MarketState, opportunity_features
from apex_stream.simulator import MarketSimulator


@pytest.fixture(scope="module")
def simulated() -> tuple[np.ndarray, np.ndarray, list]:
    """Features of ~2000 opportunities, each computed after the prices before it, and their
    hidden success probabilities."""
    market = MarketState()
    blocks, truth, opportunities = [], [], []
    for step in MarketSimulator(5).run(duration=10.0):
        market.update(step.prices)
        if step.opportunities:
            blocks.append(opportunity_features(step.opportunities, market))
            truth.append(step.success_probability)
            opportunities += step.opportunities
    return np.vstack(blocks), np.concatenate(truth), opportunities
