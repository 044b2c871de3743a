"""Learning from outcomes: the online ensemble member and per-version performance."""
