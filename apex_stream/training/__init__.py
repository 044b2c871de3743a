"""Offline training of the ensemble members from simulator data."""
