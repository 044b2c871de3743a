"""Forecasts fitted and measured offline: a token's price at seed 001's horizons and its
volatility (GARCH), on simulated quotes run through the worker's own MarketState. The worker
applies the fitted parameters (``features/forecast.py``) and needs nothing from here."""
