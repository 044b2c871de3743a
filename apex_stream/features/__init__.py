"""Features: market state from prices and the versioned opportunity feature list."""

from .market import MarketState
from .opportunity import FEATURE_VERSION, FEATURES, impute, opportunity_features

__all__ = ["FEATURES", "FEATURE_VERSION", "MarketState", "impute", "opportunity_features"]
