"""`apex-stream backtest`: simulated history replayed through the worker's features, active
ensemble and voting, comparing the ML gate with the scanner's own confidence filter.

The history is one contiguous simulator run built by the same code as the training data
(:mod:`apex_stream.training.dataset`: price ticks update a ``MarketState``, each step's
opportunities are featurised against it, every row carries its outcome). It starts a week after
the training day and its seed must not be one of the training segments' seeds, so the models
never saw any of it. The last ``max outcome delay`` seconds are left out, so every opportunity in
the backtest has its outcome (otherwise the tail would keep only fast chains' opportunities).

Strategies, over the same opportunities:

- **ML gate**: execute when the ensemble's vote decides so (``score > APEX_THRESHOLD``).
- **baseline**: execute whatever the scanner proposes with ``confidence_score >= min_confidence``.
- **execute all** (reference row): every opportunity.

Money: an outcome's ``realized_profit_usd`` is already net of gas (the simulator books
``output - input - gas_cost_usd`` on success and ``-gas_cost_usd`` on a revert), so a strategy's
net profit is the plain sum of its executed outcomes' ``realized_profit_usd``; gas is not
subtracted again. P&L is booked at the opportunity's timestamp.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ..errors import ApexStreamError
from ..features import FEATURES
from ..inference.ensemble import Ensemble
from ..inference.members import MEMBERS
from ..inference.registry import Registry
from ..inference.voting import Vote, VotingConfig
from ..settings import Settings
from ..simulator import SimConfig
from ..simulator.engine import delay_range
from ..training.dataset import DAY_START, SEGMENTS, Dataset, simulate_run

#: The backtest's history starts a week after the training day (2026-01-08T00:00:00Z).
START = DAY_START + 7 * 86_400
DEFAULT_SEED = 2027
DEFAULT_OPPORTUNITIES = 600_000
DEFAULT_MIN_CONFIDENCE = 0.5
#: Sharpe ratios are of the net P&L per simulated minute.
DEFAULT_PERIOD_S = 60.0
CONFIDENCE = FEATURES.index("confidence_score")


class BacktestError(ApexStreamError):
    """A backtest that cannot be run as asked; the message names the fix."""


# --- metrics: pure functions of arrays ------------------------------------------------------


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


# --- history and scoring --------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class History:
    """Simulated opportunities with known outcomes, in time order, from ``start`` to ``end``."""

    seed: int
    start: float
    end: float
    simulated: int  # opportunities the simulator produced (including the left-out tail)
    tail_s: float  # seconds left out at the end (the longest outcome delay)
    data: Dataset

    @property
    def confidence(self) -> np.ndarray:
        return self.data.X[:, CONFIDENCE]


def training_seeds(registry: Registry) -> frozenset[int]:
    """Simulator seeds of the segments the active members were trained on."""
    seeds: set[int] = set()
    for name in MEMBERS:
        seed = registry.active(name).metrics.get("seed")
        if seed is not None:
            seeds |= {int(seed) * SEGMENTS + k for k in range(SEGMENTS)}
    return frozenset(seeds)


def simulate_history(
    seed: int, opportunities: int, *, start: float = START, config: SimConfig | None = None
) -> History:
    """``opportunities`` simulated from ``start``; the tail whose outcomes might not have landed
    when the run ends (the longest outcome delay) is left out."""
    data = simulate_run(seed, start, opportunities, config)
    longest = max(delay_range(c.block_time)[1] for c in (config or SimConfig()).chains)
    end = float(data.timestamp[-1]) - longest if len(data) else start
    if end <= start:
        raise BacktestError(
            f"{opportunities:,} opportunities span less than the longest outcome delay "
            f"({longest:.1f} s of sim time): simulate more"
        )
    kept = int(np.searchsorted(data.timestamp, end, side="right"))
    return History(seed, start, end, opportunities, longest, data.slice(0, kept))


def score_history(
    ensemble: Ensemble,
    X: np.ndarray,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> Vote:
    """The ensemble's vote over ``X`` in micro-batches of ``batch_size`` rows, as the worker
    scores them (each member imputes with its training means, then the configured voting)."""
    scores, decisions = [], []
    for i in range(0, len(X), batch_size):
        v = ensemble.score(X[i : i + batch_size]).vote
        scores.append(v.score)
        decisions.append(v.decision)
        if on_batch is not None:
            on_batch(len(v.score))
    if not scores:
        return Vote(np.empty(0), np.empty(0, dtype=bool))
    return Vote(np.concatenate(scores), np.concatenate(decisions))


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """The strategies' figures over one history, with what produced them."""

    history: History
    vote: Vote
    ml: StrategyResult
    baseline: StrategyResult
    everything: StrategyResult
    min_confidence: float
    period: float
    versions: dict[str, str]
    providers: dict[str, str]
    voting: VotingConfig
    batch_size: int
    #: simulator seeds of the shipped models' training segments (none of them is this history's)
    training_seeds: frozenset[int] = frozenset()
    seconds: float = 0.0

    @property
    def strategies(self) -> tuple[StrategyResult, ...]:
        return (self.ml, self.baseline, self.everything)


def compare(
    history: History, decision: np.ndarray, min_confidence: float, period: float
) -> tuple[StrategyResult, StrategyResult, StrategyResult]:
    """ML gate, baseline and execute-all figures over ``history``."""
    d = history.data
    strategy = partial(
        evaluate,
        profit=d.profit_usd,
        success=d.y > 0.5,
        timestamps=d.timestamp,
        start=history.start,
        end=history.end,
        period=period,
    )
    # the features are float32: compare the confidence in float32 too (monotone rounding)
    baseline = history.confidence >= np.float32(min_confidence)
    return (
        strategy("ML gate", decision),
        strategy(f"baseline (confidence >= {min_confidence:g})", baseline),
        strategy("execute all (reference)", np.ones(len(d), dtype=bool)),
    )


# --- outputs --------------------------------------------------------------------------------


def _usd(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.2f}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_report(result: BacktestResult, command: str, plot_name: str = "equity.png") -> str:
    """The markdown report."""
    h, r = result.history, result
    v = r.voting
    voting = f"`{v.strategy}`, threshold {v.threshold:g}"
    if v.strategy == "weighted":
        weights = ", ".join(f"{m} {w:g}" for m, w in v.weights.items())
        voting += f", weights {weights}, online weight {v.online_weight:g}"
    minutes = (h.end - h.start) / 60.0
    period = f"{r.period:g} s" if r.period != 60.0 else "minute"
    header = (
        "| strategy | trades | win rate | success rate | net profit (USD) | per trade (USD) "
        f"| Sharpe (per {period}) | max drawdown (USD) |\n|---|---|---|---|---|---|---|---|"
    )
    rows = "\n".join(
        f"| {s.name} | {s.trades:,} | {s.win_rate:.1%} | {s.success_rate:.1%} | "
        f"{_usd(s.net_profit_usd)} | {_usd(s.profit_per_trade_usd)} | {s.sharpe:.3f} | "
        f"{_usd(s.max_drawdown_usd)} |"
        for s in r.strategies
    )
    ml, base = r.ml.executed, r.baseline.executed
    profit = h.data.profit_usd
    overlap = "\n".join(
        f"| {label} | {int(m.sum()):,} | {_usd(float(profit[m].sum()))} |"
        for label, m in (
            ("both execute", ml & base),
            ("ML gate only", ml & ~base),
            ("baseline only", ~ml & base),
            ("neither", ~ml & ~base),
        )
    )
    versions = ", ".join(f"{m} {ver}" for m, ver in r.versions.items())
    providers = ", ".join(f"{m} on {p}" for m, p in r.providers.items())
    gain = r.ml.net_profit_usd - r.baseline.net_profit_usd
    periods = math.ceil((h.end - h.start) / r.period)
    per_year = 365 * 86_400 / r.period
    return f"""# Backtest: ML gate vs scanner confidence

```bash
{command}
```

## History

- Simulator seed **{h.seed}**, one contiguous run from {_iso(h.start)}: {h.simulated:,}
  opportunities simulated, of which the **{len(h.data):,}** up to {_iso(h.end)}
  ({minutes:.1f} simulated minutes) are backtested. The last {h.tail_s:.1f} s of the run (the
  longest outcome delay) are left out, so every backtested opportunity has its outcome.
- Unseen by the models: they were trained on {_iso(DAY_START)[:10]} with simulator segment seeds
  {_seed_range(r.training_seeds)}; this history is another seed on another day.
- Features computed exactly as the worker computes them (`apex_stream/training/dataset.py`).

## Models

- Active ensemble from `models/manifest.json`: {versions} ({providers}).
- Voting from settings: {voting}.
- Scored in micro-batches of {r.batch_size:,} rows (`APEX_BATCH_MAX_SIZE`). The online learner
  scores as shipped: it does not learn from outcomes during the replay.

## Results

{header}
{rows}

The ML gate makes **{_usd(gain)} USD** {"more" if gain >= 0 else "less"} than the baseline with
{r.ml.trades:,} trades instead of {r.baseline.trades:,}.

| the two strategies | opportunities | net profit (USD) |
|---|---|---|
{overlap}

![equity curves]({plot_name})

## Definitions

- **Net profit**: the sum of `realized_profit_usd` of the executed opportunities' outcomes.
  That field is already after gas (the simulator books `output - input - gas_cost_usd` on
  success and `-gas_cost_usd` on a revert), so gas is counted exactly once.
- **Win rate**: share of trades with a positive net profit; **success rate**: share whose
  transaction succeeded on chain (a success can still lose money to output slippage and gas).
- **Sharpe**: mean / standard deviation (ddof 1) of the net P&L per simulated {period}
  ({periods:,} periods; periods without trades count as 0; P&L is booked at the
  opportunity's timestamp). No risk-free rate and **not annualised**: one simulated hour says
  little about a year (for 24/7 trading, multiply by sqrt({per_year:,.0f}) to annualise).
- **Max drawdown**: the largest fall of cumulative net P&L from its running peak, trade by
  trade, starting from 0.

Ran in {r.seconds:.1f} s.
"""


def _seed_range(seeds: frozenset[int]) -> str:
    ordered = sorted(seeds)
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(map(str, ordered)) or "(not recorded in the manifest)"


def plot_equity(result: BacktestResult, path: Path) -> None:
    """Cumulative net P&L of each strategy over simulated time, and its drawdown below."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import StrMethodFormatter
    except ImportError as exc:
        raise BacktestError(f"{exc}: install the train extra (pip install -e '.[train]')") from None

    h = result.history
    minutes = (h.data.timestamp - h.start) / 60.0
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    equity_ax, dd_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    styles = {
        result.ml.name: {"color": "tab:blue", "lw": 1.6},
        result.baseline.name: {"color": "tab:orange", "lw": 1.6},
        result.everything.name: {"color": "0.55", "lw": 1.0, "ls": "--"},
    }
    # at most ~4000 points per line: the curve's shape without megabytes of vertices
    step = max(1, len(minutes) // 4000)
    for s in result.strategies:
        pnl = np.where(s.executed, h.data.profit_usd, 0.0)
        equity, dd = np.cumsum(pnl), drawdown(pnl)
        idx = np.unique(np.r_[np.arange(0, len(equity), step), len(equity) - 1])
        equity_ax.plot(minutes[idx], equity[idx], label=s.name, **styles[s.name])
        dd_ax.plot(minutes[idx], -dd[idx], **styles[s.name])
    versions = ", ".join(f"{m} {v}" for m, v in result.versions.items())
    equity_ax.set_title(
        f"Backtest, seed {h.seed}, {len(h.data):,} opportunities ({versions}; "
        f"{result.voting.strategy} voting)"
    )
    equity_ax.set_ylabel("cumulative net P&L (USD)")
    equity_ax.legend(loc="upper left")
    equity_ax.grid(alpha=0.3)
    dd_ax.set_ylabel("drawdown (USD)")
    dd_ax.set_xlabel(f"simulated minutes from {_iso(h.start)}")
    dd_ax.grid(alpha=0.3)
    for ax in (equity_ax, dd_ax):
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    fig.savefig(path, dpi=110)


# --- the command ----------------------------------------------------------------------------


def run_backtest(
    settings: Settings,
    *,
    seed: int = DEFAULT_SEED,
    opportunities: int = DEFAULT_OPPORTUNITIES,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    period: float = DEFAULT_PERIOD_S,
    out: Path = Path("bench/backtest"),
    command: str = "apex-stream backtest",
    console: Console | None = None,
) -> BacktestResult:
    """Simulate, score with the active ensemble, compare, and write ``report.md`` and
    ``equity.png`` to ``out``."""
    console = console or Console()
    began = time.perf_counter()
    registry = Registry(settings.models_dir)
    seen = training_seeds(registry)
    if seed in seen:
        raise BacktestError(
            f"seed {seed} is one of the training segments' seeds {sorted(seen)}: its market "
            "path was in the training data; pick another --seed"
        )
    ensemble = Ensemble(settings)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(
            f"simulating {opportunities:,} opportunities (seed {seed})", total=None
        )
        history = simulate_history(seed, opportunities)
        progress.update(task, total=1, completed=1)
        task = progress.add_task("scoring with the ensemble", total=len(history.data))
        vote = score_history(
            ensemble,
            history.data.X,
            settings.batch_max_size,
            lambda n: progress.advance(task, n),
        )
    ml, baseline, everything = compare(history, vote.decision, min_confidence, period)
    result = BacktestResult(
        history=history,
        vote=vote,
        ml=ml,
        baseline=baseline,
        everything=everything,
        min_confidence=min_confidence,
        period=period,
        versions=ensemble.versions,
        providers=ensemble.providers,
        voting=ensemble.voting,
        batch_size=settings.batch_max_size,
        training_seeds=seen,
    )
    out.mkdir(parents=True, exist_ok=True)
    with console.status("plotting"):
        plot_equity(result, out / "equity.png")
    result = replace(result, seconds=time.perf_counter() - began)
    (out / "report.md").write_text(render_report(result, command))
    return result
