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

#: Price forecast horizons (s), seed 001's ``predictionHorizons``.
HORIZONS_S = (5.0, 10.0, 15.0, 30.0)
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


def load_params(folder: Path) -> ForecastParams | None:
    """The forecast parameters in a models folder, or None when it has none."""
    path = folder / FORECAST_FILE
    if not path.exists():
        return None
    return msgspec.json.decode(path.read_bytes(), type=ForecastParams)


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
    >= 1 samples (a token quoted less often than ``sample_s``): ``k`` GARCH steps, each fed
    ``r2 / k``, in closed form. NaN state (no return yet) starts at ``r2 / k``."""
    a, b = params.alpha, params.beta
    per = r2 / k
    decay = np.exp(-k / params.long_run_samples)
    long_run = np.where(np.isnan(long_run), per, decay * long_run + (1.0 - decay) * per)
    var = np.where(np.isnan(var), long_run, var)
    step = (1.0 - a - b) * long_run + a * per
    bk = b**k
    updated: np.ndarray = step * (1.0 - bk) / (1.0 - b) + bk * var
    return updated, long_run


def variance_sum(var: np.ndarray, long_run: np.ndarray, params: ForecastParams) -> np.ndarray:
    """GARCH forecast of the summed variance of the next ``volatility_steps`` samples, from the
    next sample's variance: each step's excess over the long run decays by alpha + beta."""
    phi, h = params.alpha + params.beta, params.volatility_steps
    total: np.ndarray = h * long_run + (var - long_run) * (1.0 - phi**h) / (1.0 - phi)
    return total
