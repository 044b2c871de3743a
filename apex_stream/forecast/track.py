"""A simulated market's quotes run through MarketState, recorded for fitting and measuring
forecasts: every ``sample_s / 2`` seconds each token's last quote, its EMAs, the forecasts the
state holds and the simulator's hidden mid, plus every tick (for the quote ``h`` seconds on).

Records alternate: at a sample boundary (even records) the last quote is the sampled price the
GARCH sees; half a sample later (odd records) the state's GARCH has taken that boundary's return
and its volatility forecast covers the samples that follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..features.forecast import ForecastParams
from ..features.market import EMA, FORECAST, LOGP, VOLF, MarketState
from ..simulator import SimConfig
from ..simulator.engine import MarketSimulator

#: Prices only: forecasts need no opportunities, and they cost most of a simulation's time.
PRICES_ONLY = SimConfig(opportunity_rate=0.0)


@dataclass(frozen=True)
class Track:
    """One simulated run's record; arrays are (records, tokens) unless said otherwise."""

    keys: list[str]  # chain:token, the columns
    stable: np.ndarray  # (tokens,) bool
    times: np.ndarray  # (records,)
    logp: np.ndarray  # last quote's log price
    ema: np.ndarray  # (records, tokens, EMAs) the state's log price EMAs
    forecast: np.ndarray  # (records, tokens, horizons) log price forecasts (NaN: none)
    volatility: np.ndarray  # volatility forecast, bps per sqrt(s) (NaN: none)
    mid: np.ndarray  # the simulator's hidden log mid price
    tick_times: np.ndarray  # (ticks,) every quote, in time order
    tick_keys: np.ndarray  # (ticks,) its column
    tick_logp: np.ndarray  # (ticks,)

    def quote_after(self, h: float) -> np.ndarray:
        """The log price of each token's first quote at or after each record's time + ``h``
        (NaN where the run ends first)."""
        out = np.full(self.logp.shape, np.nan)
        for k in range(len(self.keys)):
            mine = self.tick_keys == k
            times, logp = self.tick_times[mine], self.tick_logp[mine]
            j = np.searchsorted(times, self.times + h)
            found = j < len(times)
            out[found, k] = logp[j[found]]
        return out

    def mid_after(self, h: float) -> np.ndarray:
        """The hidden log mid ``h`` seconds after each record (h a multiple of the record
        step; NaN past the end)."""
        step = int(round(h / (self.times[1] - self.times[0])))
        out = np.full(self.mid.shape, np.nan)
        out[: len(out) - step] = self.mid[step:]
        return out


def simulate(
    seed: int, start: float, duration: float, params: ForecastParams | None, sample_s: float = 5.0
) -> Track:
    """Run the simulator's prices for ``duration`` seconds through a MarketState (with
    ``params``' forecasts when given), recording every ``sample_s / 2`` seconds."""
    sim = MarketSimulator(seed, start_time=start, config=PRICES_ONLY)
    names = sorted({(chain, token) for chain, token, _ in sim._market.pool_names})
    keys = [f"{c}:{t}" for c, t in names]
    column = {k: i for i, k in enumerate(keys)}
    token = np.array([sim._market.token_index[t] for _, t in names])
    market = MarketState(forecast=params)
    records: list[tuple[float, np.ndarray, np.ndarray]] = []
    ticks: list[tuple[float, int, float]] = []
    for step in sim.run(duration=duration, dt=sample_s / 2):
        market.update(step.prices)
        ticks += [(t.timestamp, column[f"{t.chain}:{t.token}"], t.price) for t in step.prices]
        rows = np.array([market.rows.get(k, -1) for k in keys])
        state = np.where((rows >= 0)[:, None], market.state[np.maximum(rows, 0)], np.nan)
        records.append((sim.now, state, np.log(sim._market.mid)[token]))
    state = np.stack([r[1] for r in records])
    tick = np.array(ticks).reshape(-1, 3)
    return Track(
        keys=keys,
        stable=sim._market.stable[token],
        times=np.array([r[0] for r in records]),
        logp=state[:, :, LOGP],
        ema=state[:, :, EMA],
        forecast=state[:, :, FORECAST],
        volatility=state[:, :, VOLF],
        mid=np.stack([r[2] for r in records]),
        tick_times=tick[:, 0],
        tick_keys=tick[:, 1].astype(np.int64),
        tick_logp=np.log(tick[:, 2]),
    )
