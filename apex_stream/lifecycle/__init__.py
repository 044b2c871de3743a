"""Model lifecycle: registry operations, A/B tests, retraining, drift monitoring, backtests."""
