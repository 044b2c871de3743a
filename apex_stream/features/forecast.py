"""Price and volatility forecasts from a token's market state, with parameters fitted offline.

A quote is the token's mid price times one pool's dislocation, and dislocations revert within
seconds; the mid itself is a martingale. So the price forecast is a denoised current price: the
last quote pulled towards the token's price EMAs by coefficients fitted per horizon (least
squares against the quote ``h`` seconds later, ``apex_stream/forecast/fit.py``). The volatility
forecast is a GARCH(1,1) on the last quote sampled every ``sample_s`` seconds, its alpha and beta
fitted with ``arch`` and its long-run variance targeted at a slow EWMA of the same squared
returns, so the parameters carry over to tokens the fit never saw. Everything here is whole-array
numpy: the worker applies it in :class:`~apex_stream.features.market.MarketState`'s batch
update and does not need ``arch``.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from ..errors import ModelError

#: Price forecast horizons (s), seed 001's ``predictionHorizons``.
HORIZONS_S = (5.0, 10.0, 15.0, 30.0)
#: Horizons (s) of the log price EMAs the price forecast weighs: ``market.HORIZONS``, the
#: momentum features' (defined here so the parameters can be checked without the state).
EMA_HORIZONS_S = (5.0, 15.0, 30.0, 60.0, 300.0)
#: The parameters' file in the models folder; without it the worker makes no forecasts.
FORECAST_FILE = "forecast.json"


class ForecastParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Fitted forecast parameters and the validation figures that decided what is kept."""

    version: str
    #: Horizons kept (beat the last price on validation), and per horizon the coefficients c:
    #: log forecast = log p - sum_i c_i * (log p - EMA_i(log p)), EMAs of ``market.HORIZONS``.
    horizons_s: list[float]
    momentum_coef: list[list[float]]
    #: GARCH(1,1) on returns of the last quote sampled every ``sample_s`` seconds:
    #: var' = (1 - alpha - beta) * long_run + alpha * r^2 + beta * var, long_run an EWMA of r^2
    #: over ``long_run_samples`` samples. ``volatility`` is False when it did not beat the
    #: rolling volatility on validation (then no volatility forecast is made).
    volatility: bool
    sample_s: float
    alpha: float
    beta: float
    long_run_samples: float
    #: The volatility forecast covers this many samples ahead (12 x 5 s: seed 001's minute).
    volatility_steps: int
    #: How the parameters were fitted and validated (seeds, sizes, errors against baselines).
    fit: dict[str, float | str | list[int]] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse parameters the maths cannot take when the file is loaded (msgspec turns the
        error into a ValidationError naming it), not later on every batch of ticks."""
        if self.horizons_s != sorted(set(self.horizons_s)) or not set(self.horizons_s) <= set(
            HORIZONS_S
        ):
            raise ValueError(f"horizons_s must be sorted, distinct, among {list(HORIZONS_S)}")
        if len(self.momentum_coef) != len(self.horizons_s):
            raise ValueError("momentum_coef needs one row per horizon in horizons_s")
        if any(len(row) != len(EMA_HORIZONS_S) for row in self.momentum_coef):
            raise ValueError(f"each momentum_coef row needs {len(EMA_HORIZONS_S)} coefficients")
        if not (self.alpha >= 0 and self.beta >= 0 and self.alpha + self.beta < 1):
            raise ValueError("alpha and beta must be >= 0 with alpha + beta < 1 (stationary)")
        if not (self.sample_s > 0 and self.long_run_samples > 0 and self.volatility_steps >= 1):
            raise ValueError("sample_s and long_run_samples must be > 0, volatility_steps >= 1")


def load_params(folder: Path) -> ForecastParams | None:
    """The forecast parameters in a models folder, or None when it has none; a file that is not
    valid parameters is refused here, once, with what is wrong."""
    path = folder / FORECAST_FILE
    if not path.exists():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=ForecastParams)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise ModelError(
            f"{path} is not valid forecast parameters ({exc}): refit them with "
            "python -m apex_stream.forecast.fit, or remove the file to run without forecasts"
        ) from exc


def save_params(folder: Path, params: ForecastParams) -> Path:
    path = folder / FORECAST_FILE
    path.write_bytes(msgspec.json.format(msgspec.json.encode(params)) + b"\n")
    return path


def price_forecast(logp: np.ndarray, ema: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Log price forecasts (n, horizons) from log prices (n,), their EMAs (n, emas) and the
    coefficients (horizons, emas)."""
    forecast: np.ndarray = logp[:, None] - (logp[:, None] - ema) @ coef.T
    return forecast


def garch_update(
    var: np.ndarray,
    long_run: np.ndarray,
    r2: np.ndarray,
    k: np.ndarray,
    params: ForecastParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Next-sample variance and long-run variance after a squared return ``r2`` that spans ``k``
    >= 1 samples (a token quoted less often than ``sample_s``): exactly ``k`` GARCH steps, each
    fed ``r2 / k`` and each moving the long run one sample towards it, in closed form (the long
    run after step j is ``per + d^j (long_run - per)``, ``d`` its per-sample decay, so the
    steps' sum is two geometric series). NaN state (no return yet) starts at ``r2 / k``."""
    a, b = params.alpha, params.beta
    per = r2 / k
    d = np.exp(-1.0 / params.long_run_samples)
    start = np.isnan(long_run)
    excess = np.where(start, 0.0, long_run - per)  # the long run's distance from its target
    var = np.where(np.isnan(var), np.where(start, per, long_run), var)
    bk, dk = b**k, d**k
    # sum_{j=1..k} b^(k-j) d^j, with its limit k d^k where b and d coincide
    gap = b - d
    close = np.abs(gap) < 1e-12
    mixed = np.where(close, k * dk, d * (bk - dk) / np.where(close, 1.0, gap))
    updated: np.ndarray = per * (1.0 - bk) + (1.0 - a - b) * excess * mixed + bk * var
    return updated, per + dk * excess


def variance_sum(var: np.ndarray, long_run: np.ndarray, params: ForecastParams) -> np.ndarray:
    """GARCH forecast of the summed variance of the next ``volatility_steps`` samples, from the
    next sample's variance: each step's excess over the long run decays by alpha + beta (the
    long run held where it is: its EWMA moves by its own forecast, nothing)."""
    phi, h = params.alpha + params.beta, params.volatility_steps
    total: np.ndarray = h * long_run + (var - long_run) * (1.0 - phi**h) / (1.0 - phi)
    return total
