"""The backtest's money figures, pure functions of arrays: net P&L per period, Sharpe ratio,
drawdown, win rate, and one strategy's figures over a history (:func:`evaluate`).

An outcome's ``realized_profit_usd`` is already net of gas, so a strategy's P&L is the plain sum
of its executed outcomes' profits; it is booked at the opportunity's timestamp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def win_rate(profit: np.ndarray) -> float:
    """Share of trades with a positive net profit; NaN without trades."""
    profit = np.asarray(profit, dtype=np.float64)
    return float(np.mean(profit > 0.0)) if profit.size else math.nan


def period_pnl(
    timestamps: np.ndarray, pnl: np.ndarray, *, start: float, end: float, period: float
) -> np.ndarray:
    """Net P&L summed per ``period`` seconds from ``start`` to ``end``; periods without trades
    count as 0, so strategies over one history share one grid (the last period may be partial)."""
    if period <= 0 or end <= start:
        raise ValueError(f"need period > 0 and end > start, got {period=}, {start=}, {end=}")
    t = np.asarray(timestamps, dtype=np.float64)
    if t.size and (t.min() < start or t.max() > end):
        raise ValueError("timestamps must lie in [start, end]")
    n = math.ceil((end - start) / period)
    index = np.minimum(((t - start) // period).astype(np.int64), n - 1)
    return np.bincount(index, weights=np.asarray(pnl, dtype=np.float64), minlength=n)


def sharpe(pnl: np.ndarray, periods_per_year: float | None = None) -> float:
    """Mean over standard deviation (ddof 1) of per-period P&L, no risk-free rate; multiplied by
    ``sqrt(periods_per_year)`` only when that is given. NaN with fewer than 2 periods or no
    variation."""
    pnl = np.asarray(pnl, dtype=np.float64)
    if pnl.size < 2:
        return math.nan
    sd = float(np.std(pnl, ddof=1))
    if sd == 0.0:
        return math.nan
    ratio = float(np.mean(pnl)) / sd
    return ratio * math.sqrt(periods_per_year) if periods_per_year else ratio


def drawdown(pnl: np.ndarray) -> np.ndarray:
    """How far the cumulative P&L lies below its running peak after each trade (>= 0); the
    peak starts at 0, the equity before the first trade."""
    equity = np.cumsum(np.asarray(pnl, dtype=np.float64))
    return np.maximum.accumulate(np.maximum(equity, 0.0)) - equity


def max_drawdown(pnl: np.ndarray) -> float:
    """The largest fall of the cumulative P&L from its running peak (which starts at the
    equity before the first trade, 0); 0.0 without trades."""
    dd = drawdown(pnl)
    return float(dd.max()) if dd.size else 0.0


@dataclass(frozen=True, eq=False)
class StrategyResult:
    """One strategy's figures over a history; ``executed`` marks its trades."""

    name: str
    executed: np.ndarray
    trades: int
    win_rate: float
    success_rate: float
    net_profit_usd: float
    sharpe: float
    max_drawdown_usd: float

    @property
    def profit_per_trade_usd(self) -> float:
        return self.net_profit_usd / self.trades if self.trades else math.nan


def evaluate(
    name: str,
    executed: np.ndarray,
    *,
    profit: np.ndarray,
    success: np.ndarray,
    timestamps: np.ndarray,
    start: float,
    end: float,
    period: float,
) -> StrategyResult:
    """Figures of executing the rows marked in ``executed`` (rows in time order)."""
    executed = np.asarray(executed, dtype=bool)
    pnl = np.asarray(profit, dtype=np.float64)[executed]
    ok = np.asarray(success)[executed]
    per_period = period_pnl(timestamps[executed], pnl, start=start, end=end, period=period)
    return StrategyResult(
        name=name,
        executed=executed,
        trades=int(executed.sum()),
        win_rate=win_rate(pnl),
        success_rate=float(np.mean(ok)) if ok.size else math.nan,
        net_profit_usd=float(pnl.sum()),
        sharpe=sharpe(per_period),
        max_drawdown_usd=max_drawdown(pnl),
    )
