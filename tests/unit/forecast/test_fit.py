"""Fitting recovers what a synthetic series was made with: GARCH(1,1) alpha and beta from
returns simulated with them, and the returns sampled from a track's boundary records."""

from __future__ import annotations

import numpy as np
import pytest

from apex_stream.forecast.fit import fit_garch
from apex_stream.forecast.measure import ewma, qlike, sampled_returns
from apex_stream.forecast.track import Track

pytest.importorskip("arch")


def garch_returns(rng: np.random.Generator, n: int, alpha: float, beta: float) -> np.ndarray:
    omega, var, out = 1e-8, 1e-8 / (1 - alpha - beta), np.empty(n)
    for i in range(n):
        out[i] = np.sqrt(var) * rng.standard_normal()
        var = omega + alpha * out[i] ** 2 + beta * var
    return out


def track_of(returns: np.ndarray) -> Track:
    """A track whose last quotes move by ``returns`` (samples, tokens) at each 5 s boundary and
    stand still in between (records every 2.5 s)."""
    samples, tokens = returns.shape
    at_boundary = np.vstack([np.zeros(tokens), np.cumsum(returns, axis=0)])
    logp = np.repeat(at_boundary, 2, axis=0)[:-1]  # boundary, half-way, boundary, ...
    times = 1_700_000_000.0 + 2.5 * np.arange(len(logp))
    empty = np.full(logp.shape, np.nan)
    return Track(
        keys=[f"c:T{k}" for k in range(tokens)],
        stable=np.zeros(tokens, bool),
        times=times,
        logp=logp,
        ema=np.repeat(logp[:, :, None], 5, axis=2),
        forecast=np.repeat(empty[:, :, None], 4, axis=2),
        volatility=empty,
        mid=logp,
        tick_times=np.empty(0),
        tick_keys=np.empty(0, np.int64),
        tick_logp=np.empty(0),
    )


def test_sampled_returns_are_the_moves_between_boundaries() -> None:
    returns = np.array([[0.01, -0.02], [0.03, 0.0], [-0.01, 0.005]])
    got, at = sampled_returns(track_of(returns), 5.0)
    np.testing.assert_allclose(got, returns, atol=1e-15)
    assert at.tolist() == [2, 4, 6]


def test_the_garch_fit_recovers_alpha_and_beta() -> None:
    rng = np.random.default_rng(7)
    returns = np.column_stack([garch_returns(rng, 5000, 0.15, 0.75) for _ in range(3)])
    alpha, beta = fit_garch([track_of(returns)])
    assert alpha == pytest.approx(0.15, abs=0.05) and beta == pytest.approx(0.75, abs=0.08)


def test_qlike_is_zero_for_a_perfect_forecast_and_positive_otherwise() -> None:
    realized = np.array([1.0, 2.0, 4.0])
    assert qlike(realized, realized) == 0.0
    assert qlike(realized * 2, realized) > 0 and qlike(realized / 2, realized) > 0


def test_the_ewma_baseline_weighs_each_sample_by_its_half_life() -> None:
    r2 = np.array([[np.nan, 4.0], [2.0, 8.0], [6.0, 2.0]])
    lam = 0.5 ** (1 / 2)
    got = ewma(r2, 2.0)
    assert np.isnan(got[0, 0]) and got[1, 0] == 2.0  # a token's EWMA starts at its first value
    assert got[2, 0] == pytest.approx(lam * 2.0 + (1 - lam) * 6.0)
    second = lam * 4.0 + (1 - lam) * 8.0
    assert got[:, 1] == pytest.approx([4.0, second, lam * second + (1 - lam) * 2.0])
