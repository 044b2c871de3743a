"""Forecast errors against the naive baselines, on a :class:`~.track.Track`.

Price: RMSE in bps of the log price forecast against the token's first quote at or after t + h
(what a user can check on their own ticks) and against the hidden mid at t + h, beside the same
for the last quote. Volatility: QLIKE and RMSE of the forecast summed variance of the next
``steps`` sampled returns against their realized sum, beside rolling volatilities (the mean
squared sampled return over a trailing window, times ``steps``) and EWMAs of the squared
sampled returns (RiskMetrics-style, by half-life), the strongest naive baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..features.forecast import HORIZONS_S
from .track import Track

#: Trailing windows (samples) of the rolling-volatility baselines: 1, 5 and 10 minutes at 5 s.
ROLLING = (12, 60, 120)
#: Half-lives (samples) of the EWMA baselines: 30 s, 1, 2 and 5 minutes at 5 s.
EWMA_HALF_LIVES = (6, 12, 24, 60)


def rmse_bps(forecast: np.ndarray, actual: np.ndarray) -> float:
    error = (forecast - actual)[np.isfinite(forecast) & np.isfinite(actual)] * 1e4
    return float(np.sqrt(np.mean(error**2)))


@dataclass(frozen=True)
class PriceErrors:
    """RMSE (bps) of the forecast and of the last quote at one horizon."""

    horizon_s: float
    forecast_quote: float
    last_quote: float
    forecast_mid: float
    last_mid: float


def price_errors(track: Track, mask: np.ndarray | None = None) -> list[PriceErrors]:
    """Per horizon, over the tokens of ``mask`` (all by default)."""
    cols = np.ones(len(track.keys), bool) if mask is None else mask
    out = []
    for i, h in enumerate(HORIZONS_S):
        quote, mid = track.quote_after(h)[:, cols], track.mid_after(h)[:, cols]
        forecast, last = track.forecast[:, cols, i], track.logp[:, cols]
        out.append(
            PriceErrors(
                h,
                rmse_bps(forecast, quote),
                rmse_bps(last, quote),
                rmse_bps(forecast, mid),
                rmse_bps(last, mid),
            )
        )
    return out


def sampled_returns(track: Track, sample_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Log returns (samples, tokens) of the last quote between sample boundaries, and the
    index of each boundary's record."""
    at = np.flatnonzero(np.isclose(np.mod(track.times, sample_s), 0.0))
    return np.diff(track.logp[at], axis=0), at[1:]


def qlike(forecast: np.ndarray, realized: np.ndarray) -> float:
    """QLIKE loss of variance forecasts (0 when they equal the realized variance)."""
    ratio = realized / forecast
    return float(np.mean(ratio - np.log(ratio) - 1.0))


@dataclass(frozen=True)
class VolatilityErrors:
    """QLIKE and RMSE (bps^2) of the forecast, of each rolling window and of each EWMA (by
    half-life), and the sample size."""

    forecast: tuple[float, float]
    rolling: dict[int, tuple[float, float]]
    ewma: dict[int, tuple[float, float]]
    n: int

    def best_baseline(self) -> float:
        """The lowest QLIKE of every naive baseline: what the forecast must beat."""
        return min(q for q, _ in [*self.rolling.values(), *self.ewma.values()])


def ewma(r2: np.ndarray, half_life: float) -> np.ndarray:
    """EWMA (samples, tokens) of squared returns with this half-life in samples, each row
    including its own sample; it starts at a token's first finite value."""
    lam = 0.5 ** (1.0 / half_life)
    out = np.empty_like(r2)
    e = r2[0]
    for j, x in enumerate(r2):
        e = np.where(np.isnan(e), x, lam * e + (1.0 - lam) * x)
        out[j] = e
    return out


def volatility_errors(
    track: Track, sample_s: float, steps: int, mask: np.ndarray | None = None, warm: int = 120
) -> VolatilityErrors:
    """The state's volatility forecast (read half a sample after each boundary) against the
    realized summed squared returns of the ``steps`` samples after it; the first ``warm``
    samples (state and windows filling) left out."""
    cols = np.ones(len(track.keys), bool) if mask is None else mask
    r, at = sampled_returns(track, sample_s)
    r = r[:, cols]
    r2 = r**2
    n = len(r) - steps
    realized = np.stack([r2[j + 1 : j + 1 + steps].sum(axis=0) for j in range(n)])
    # the record after boundary j holds the forecast made from returns up to j
    vol = track.volatility[np.minimum(at[:n] + 1, len(track.times) - 1)][:, cols]
    forecast = (vol / 1e4) ** 2 * steps * sample_s
    baselines = {
        w: np.stack([r2[max(0, j - w + 1) : j + 1].mean(axis=0) * steps for j in range(n)])
        for w in ROLLING
    }
    smooth = {h: ewma(r2, h)[:n] * steps for h in EWMA_HALF_LIVES}
    keep = np.zeros(realized.shape, bool)
    keep[warm:] = True
    keep &= (realized > 0) & np.isfinite(forecast) & (forecast > 0)
    keep &= np.all([b > 0 for b in [*baselines.values(), *smooth.values()]], axis=0)

    def scores(f: np.ndarray) -> tuple[float, float]:
        return qlike(f[keep], realized[keep]), rmse_bps(f[keep] * 1e4, realized[keep] * 1e4)

    return VolatilityErrors(
        scores(forecast),
        {w: scores(b) for w, b in baselines.items()},
        {h: scores(b) for h, b in smooth.items()},
        int(keep.sum()),
    )
