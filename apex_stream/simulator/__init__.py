"""Seeded multi-chain DEX market simulator with a hidden ground truth of opportunity success.

It drives the demo, the integration tests and the benchmarks, and measures model quality: every
outcome is drawn from :func:`success_probability`, which the simulator also hands out aligned
with its opportunities.
"""

from .config import ChainSpec, DexSpec, SimConfig, TokenSpec
from .engine import MarketSimulator, Step
from .truth import TruthInputs, success_probability

__all__ = [
    "ChainSpec",
    "DexSpec",
    "MarketSimulator",
    "SimConfig",
    "Step",
    "TokenSpec",
    "TruthInputs",
    "success_probability",
]
