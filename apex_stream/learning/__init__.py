"""Learning from outcomes: the outcome join, teaching the online member, per-version
performance, drift and health monitoring."""
