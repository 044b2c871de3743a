"""Rolling market state per (chain, token), updated from batches of price ticks.

Every quantity is an event-time, exponentially decayed statistic held in one row of floats per
token, so a batch update is a few numpy operations and no window of raw ticks is kept. Ticks
of the same token in one batch are applied in time order, in *rounds* (round k applies each
token's k-th tick): the Python loop runs as often as the busiest token ticks in the batch, not
once per tick.

A token's row (with its pools' last quotes) exports to bytes and imports back exactly, which
is how the state is shared between workers and survives restarts (see ``features/agent.py``).
Given fitted :class:`~apex_stream.features.forecast.ForecastParams`, the owner of a token's
prices also keeps its price and volatility forecasts in the row (``FORECAST``, ``VOLF``), so a
reader takes them as they are, without the parameters; an owner without parameters clears them,
so it never republishes forecasts another owner made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec
import numpy as np

from ..events import PriceTick
from .forecast import (
    EMA_HORIZONS_S,
    HORIZONS_S,
    ForecastParams,
    garch_update,
    price_forecast,
    variance_sum,
)

#: Momentum horizons (s): momentum_h = log price - EMA_h(log price).
HORIZONS = EMA_HORIZONS_S
VOLUME_TAUS = (5.0, 60.0, 300.0)  # volume-rate EMAs: fast, moving average, slow
VWAP_S, LIQUIDITY_S, VOLATILITY_S = 60.0, 300.0, 60.0
GAS_FAST, GAS_SLOW = 15.0, 300.0
#: Turnover (s): the mean of log(volume / depth) over the last seconds' quotes. Trading per
#: unit of depth surges in a stressed market, and its log averages out heavy-tailed trade sizes.
TURNOVER_S = 10.0
#: GARCH(1,1) on returns normalised to one second, z: var = w + a*z^2 + b*var, with w chosen
#: so the long-run variance tracks the EWMA variance (variance targeting).
GARCH_ALPHA, GARCH_BETA = 0.08, 0.90
#: Shortest time step used to normalise a return (quotes can share a timestamp).
MIN_DT = 0.05

# columns of a token's state row
T, LOGP = 0, 1
EMA = slice(2, 2 + len(HORIZONS))
VOLR = slice(EMA.stop, EMA.stop + len(VOLUME_TAUS))
PV, V, LIQ, LIQE, VAR, GARCH, GAS, GASF, GASS = range(VOLR.stop, VOLR.stop + 9)
# forecasts (appended: rows exported before them load with these NaN): the sample index and
# log price the GARCH's last return ended at, its next-sample and long-run variances, the
# log price forecast per horizon, the volatility forecast (bps per sqrt(s)), and the sample_s
# SAMPLE counts in (a fit with another sample_s restarts the GARCH instead of reading it)
SAMPLE, SAMPLE_LOGP, GVAR, GLR = range(GASS + 1, GASS + 5)
FORECAST = slice(GLR + 1, GLR + 1 + len(HORIZONS_S))
VOLF = FORECAST.stop
SAMPLE_S = VOLF + 1
FORECASTS = slice(SAMPLE, SAMPLE_S + 1)
# appended after the forecasts (rows exported before it load it NaN and restart it)
TURNOVER = SAMPLE_S + 1
WIDTH = TURNOVER + 1

TOKEN_FEATURES = (
    *(f"momentum_{int(h)}s" for h in HORIZONS),
    "volatility_ewma_bps",
    "volatility_garch_bps",
    "log_volume_ma",
    "volume_ratio",
    "vwap_deviation",
    "log_liquidity",
    "liquidity_ratio",
    "age_s",
    "gas_trend",
    "gas_level",
    "log_turnover",
)
AGE = TOKEN_FEATURES.index("age_s")


class TokenRecord(msgspec.Struct, array_like=True):
    """A token's exported state: its row and each pool's (dex, last log price, last time)."""

    row: bytes
    pools: list[tuple[str, float, float]]


_encode_record = msgspec.msgpack.Encoder().encode
_decode_record = msgspec.msgpack.Decoder(TokenRecord).decode


def rounds(group: np.ndarray, order_key: np.ndarray) -> list[np.ndarray]:
    """Split indices into rounds holding at most one index per group, in ``order_key`` order."""
    if not len(group):
        return []
    order = np.lexsort((order_key, group))
    g = group[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    return [order[rank == r] for r in range(int(rank.max()) + 1)]


class MarketState:
    """Decayed statistics of every token seen; grows as tokens and pools appear."""

    def __init__(self, capacity: int = 64, forecast: ForecastParams | None = None) -> None:
        #: fitted forecast parameters; None: the forecast columns are NaN in every row updated
        self.forecast = forecast
        if forecast is not None:  # per batch they would be rebuilt every round
            kept = np.isin(HORIZONS_S, forecast.horizons_s)
            self._forecast_cols = FORECAST.start + np.flatnonzero(kept)
            self._coef = np.asarray(forecast.momentum_coef, np.float64).reshape(-1, len(HORIZONS))
        self.rows: dict[str, int] = {}  # "chain:token" -> row
        self.pool_rows: dict[str, int] = {}  # "chain:token:dex" -> pool row
        self.state = np.full((capacity, WIDTH), np.nan)
        self.pool_state = np.full((4 * capacity, 2), np.nan)  # last log price, last time
        self.ticks = 0

    def _row(self, key: str) -> int:
        row = self.rows.setdefault(key, len(self.rows))
        if row >= len(self.state):
            self.state = np.vstack([self.state, np.full(self.state.shape, np.nan)])
        return row

    def _pool_row(self, key: str) -> int:
        row = self.pool_rows.setdefault(key, len(self.pool_rows))
        if row >= len(self.pool_state):
            self.pool_state = np.vstack([self.pool_state, np.full(self.pool_state.shape, np.nan)])
        return row

    def update(self, ticks: Sequence[PriceTick]) -> set[str]:
        """Apply a batch of ticks (any order); returns the keys of the tokens updated."""
        if not ticks:
            return set()
        keys = [f"{t.chain}:{t.token}" for t in ticks]
        rows = np.array([self._row(k) for k in keys])
        pools = np.array([self._pool_row(f"{k}:{t.dex}") for k, t in zip(keys, ticks, strict=True)])
        values = np.array(
            [(t.timestamp, t.price, t.volume, t.liquidity, t.gas_price) for t in ticks]
        )
        ts, price, volume, liquidity, gas = values.T
        for idx in rounds(rows, ts):
            self._apply(
                rows[idx], pools[idx], ts[idx], price[idx], volume[idx], liquidity[idx], gas[idx]
            )
        self.ticks += len(ticks)
        return set(keys)

    def _apply(
        self,
        r: np.ndarray,
        pool: np.ndarray,
        t: np.ndarray,
        price: np.ndarray,
        volume: np.ndarray,
        liquidity: np.ndarray,
        gas: np.ndarray,
    ) -> None:
        s = self.state[r]
        new = np.isnan(s[:, T])
        dt = np.where(new, 0.0, np.maximum(t - s[:, T], 0.0))
        logp = np.log(price)
        # volatility from each pool's own returns: quotes of two DEXes differ by their
        # dislocation, which is not price movement
        last = self.pool_state[pool]
        fresh_pool = np.isnan(last[:, 0])
        ret = np.where(fresh_pool, 0.0, logp - last[:, 0])
        z2 = ret**2 / np.maximum(np.nan_to_num(t - last[:, 1]), MIN_DT)
        self.pool_state[pool] = np.column_stack([logp, t])

        s = np.where(new[:, None], 0.0, s)
        s[new, FORECASTS] = np.nan  # forecasts start empty
        s[new, TURNOVER] = np.nan
        keep = np.exp(-dt[:, None] / np.asarray(HORIZONS))
        s[:, EMA] = np.where(
            new[:, None], logp[:, None], keep * s[:, EMA] + (1 - keep) * logp[:, None]
        )
        taus = np.asarray(VOLUME_TAUS)
        s[:, VOLR] = s[:, VOLR] * np.exp(-dt[:, None] / taus) + volume[:, None] / taus
        k = np.exp(-dt / VWAP_S)
        s[:, PV] = s[:, PV] * k + price * volume
        s[:, V] = s[:, V] * k + volume
        k = np.exp(-dt / LIQUIDITY_S)
        s[:, LIQE] = np.where(new, liquidity, k * s[:, LIQE] + (1 - k) * liquidity)
        s[:, LIQ] = liquidity
        k = np.exp(-dt / VOLATILITY_S)
        s[:, VAR] = np.where(new, z2, k * s[:, VAR] + (1 - k) * z2)
        s[:, GARCH] = (
            (1 - GARCH_ALPHA - GARCH_BETA) * s[:, VAR] + GARCH_ALPHA * z2 + GARCH_BETA * s[:, GARCH]
        )
        fast, slow = np.exp(-dt / GAS_FAST), np.exp(-dt / GAS_SLOW)
        s[:, GASF] = np.where(new, gas, fast * s[:, GASF] + (1 - fast) * gas)
        s[:, GASS] = np.where(new, gas, slow * s[:, GASS] + (1 - slow) * gas)
        s[:, GAS] = gas
        traded = (volume > 0) & (liquidity > 0)
        turnover = np.log(np.where(traded, volume, 1.0) / np.where(traded, liquidity, 1.0))
        k = np.where(traded, np.exp(-dt / TURNOVER_S), 1.0)  # a quote without trades tells nothing
        fresh = np.isnan(s[:, TURNOVER]) & traded
        s[:, TURNOVER] = np.where(fresh, turnover, k * s[:, TURNOVER] + (1 - k) * turnover)
        if self.forecast is not None:
            self._forecast(s, t, logp, self.forecast)
        else:  # a row loaded from the table keeps no forecast its owner made before
            s[:, FORECASTS] = np.nan
        s[:, LOGP] = logp
        s[:, T] = t
        self.state[r] = s

    def _forecast(
        self, s: np.ndarray, t: np.ndarray, logp: np.ndarray, params: ForecastParams
    ) -> None:
        """Forecast columns of rows ``s`` (still holding the previous quote in LOGP) after a
        tick: the price forecasts every tick, a GARCH step only in rows whose tick crossed a
        sample boundary (a few per cent of ticks)."""
        sample = np.floor(t / params.sample_s)
        # a new token, a row from before forecasts, or one sampled at another sample_s (its
        # SAMPLE and variances are in other units)
        start = s[:, SAMPLE_S] != params.sample_s  # NaN included
        if start.any():  # the first quote stands for the first sample; variances restart
            s[start, FORECASTS] = np.nan
            s[start, SAMPLE], s[start, SAMPLE_LOGP] = sample[start], logp[start]
            s[start, SAMPLE_S] = params.sample_s
        crossed = ~start & (sample > s[:, SAMPLE])
        if crossed.any():
            c = s[crossed]
            # the last quote before a boundary is the sampled price at it
            r2 = (c[:, LOGP] - c[:, SAMPLE_LOGP]) ** 2
            k = sample[crossed] - c[:, SAMPLE]
            c[:, GVAR], c[:, GLR] = garch_update(c[:, GVAR], c[:, GLR], r2, k, params)
            c[:, SAMPLE], c[:, SAMPLE_LOGP] = sample[crossed], c[:, LOGP]
            if params.volatility:
                total = variance_sum(c[:, GVAR], c[:, GLR], params)
                c[:, VOLF] = np.sqrt(total / (params.volatility_steps * params.sample_s)) * 1e4
            s[crossed] = c
        # what is not kept stays NaN, also in a row published under other parameters
        s[:, FORECAST] = np.nan
        if not params.volatility:
            s[:, VOLF] = np.nan
        if len(self._coef):
            s[:, self._forecast_cols] = price_forecast(logp, s[:, EMA], self._coef)

    def forecasts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Price forecasts (rows, ``HORIZONS_S``) in USD and volatility forecasts (rows,) in bps
        per sqrt(s) of token rows; NaN for unknown rows (-1) and forecasts not kept or made."""
        known = rows >= 0
        s = self.state[np.where(known, rows, 0)]
        prices = np.where(known[:, None], np.exp(s[:, FORECAST]), np.nan)
        return prices, np.where(known, s[:, VOLF], np.nan)

    def features(self, rows: np.ndarray, now: np.ndarray) -> np.ndarray:
        """``TOKEN_FEATURES`` of token rows (any shape); unknown rows (-1) give NaN. Each
        distinct token is computed once; only its age depends on ``now``."""
        distinct, inverse = np.unique(rows, return_inverse=True)
        known = distinct >= 0
        s = self.state[np.where(known, distinct, 0)]
        pv, v = s[:, PV], s[:, V]
        traded = (pv > 0) & (v > 0)
        vwap = np.where(traded, np.log(np.where(traded, pv, 1.0) / np.where(traded, v, 1.0)), 0)
        tiny = 1e-12
        per_token = np.column_stack(
            [
                *(s[:, LOGP] - s[:, EMA][:, i] for i in range(len(HORIZONS))),
                np.sqrt(s[:, VAR]) * 1e4,
                np.sqrt(s[:, GARCH]) * 1e4,
                np.log1p(s[:, VOLR][:, 1]),
                (s[:, VOLR][:, 0] + 1e-9) / (s[:, VOLR][:, 2] + 1e-9),
                np.where(traded, s[:, LOGP] - vwap, 0.0),
                np.log1p(s[:, LIQ]),
                (s[:, LIQ] + 1e-9) / (s[:, LIQE] + 1e-9),
                np.zeros(len(s)),  # age, per row below
                np.log((s[:, GASF] + tiny) / (s[:, GASS] + tiny)),
                np.log((s[:, GAS] + tiny) / (s[:, GASS] + tiny)),
                s[:, TURNOVER],
            ]
        )
        per_token[~known] = np.nan
        out = per_token[inverse.reshape(rows.shape)]
        quoted = np.where(known, s[:, T], np.nan)[inverse.reshape(rows.shape)]
        out[..., AGE] = np.maximum(now - quoted, 0.0)
        return out

    def export(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Each token's state as bytes (its row plus its pools' last quotes)."""
        pools_of: dict[str, list[tuple[str, float, float]]] = {}
        for pool_key, p in self.pool_rows.items():
            token_key, _, dex = pool_key.rpartition(":")
            logp, t = self.pool_state[p]
            pools_of.setdefault(token_key, []).append((dex, float(logp), float(t)))
        return {
            k: _encode_record(TokenRecord(self.state[self.rows[k]].tobytes(), pools_of.get(k, [])))
            for k in keys
        }

    def load(self, records: dict[str, bytes]) -> None:
        """Install exported token states (replacing what this state holds for those tokens)."""
        for key, blob in records.items():
            record = _decode_record(blob)
            row = self._row(key)  # may grow self.state: index only afterwards
            # a row exported before forecasts is shorter: its forecast columns load NaN
            values = np.frombuffer(record.row, np.float64)[:WIDTH]
            self.state[row] = np.nan
            self.state[row, : len(values)] = values
            for dex, logp, t in record.pools:
                pool = self._pool_row(f"{key}:{dex}")
                self.pool_state[pool] = (logp, t)
