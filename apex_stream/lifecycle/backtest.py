"""`apex-stream backtest`: held-out simulated history (and the user's own, when given) replayed
through the worker's features and active ensemble, comparing the decision rules with each other,
with the scanner's own confidence filter, and with the oracle: the same rules fed the
simulator's hidden success probability instead of the ensemble's score.

Each simulator history is one contiguous run built by the same code as the training data
(:mod:`apex_stream.training.dataset`: price ticks update a ``MarketState``, each step's
opportunities are featurised against it, every row carries its outcome). It starts a week after
the training day and its seed must not be one of the training segments' seeds, so the models
never saw any of it. The last ``max outcome delay`` seconds are left out, so every opportunity in
the backtest has its outcome (otherwise the tail would keep only fast chains' opportunities).
Several seeds are run and also pooled (one after another in time).

Strategies, over the same opportunities (:func:`strategies`):

- **threshold gate**: the vote's decision (``score > APEX_THRESHOLD``).
- **expected-profit gate**: ``score * win - (1 - score) * loss > APEX_MIN_EXPECTED_PROFIT_USD``
  (:mod:`apex_stream.inference.decision`). Both gates are reported whichever rule the
  settings choose; the report says which one the worker uses.
- **oracle expected-profit gate** and **oracle threshold gate**: the same rules with the hidden
  truth as the probability: what the rule earns with a perfect probability. Left out where the
  truth is unknown (the user's history).
- **baseline**: execute whatever the scanner proposes with ``confidence_score >= min_confidence``.
- **execute all** and **perfect foresight** (every trade whose outcome made money): references.

The gates are applied by :func:`apex_stream.training.quality.gates`, which the training report
uses too; the P&L figures are :mod:`apex_stream.lifecycle.pnl`'s.

Money: an outcome's ``realized_profit_usd`` is already net of gas (the simulator books
``output - input - gas_cost_usd`` on success and ``-gas_cost_usd`` on a revert), so a strategy's
net profit is the plain sum of its executed outcomes' ``realized_profit_usd``; gas is not
subtracted again. P&L is booked at the opportunity's timestamp.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

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
from ..inference.voting import VotingConfig
from ..settings import Settings
from ..simulator import SimConfig
from ..simulator.engine import delay_range
from ..training.dataset import DAY_START, SEGMENTS, Dataset, simulate_run
from ..training.quality import Quality, gates, has_truth, quality
from .pnl import StrategyResult, evaluate

#: The backtest's histories start a week after the training day (2026-01-08T00:00:00Z).
START = DAY_START + 7 * 86_400
#: Held-out seeds: never a training segment's (``models train`` uses 8 S .. 8 S + 7).
DEFAULT_SEEDS = (2027, 2028, 2029)
#: Per seed: 200 opportunities per simulated second, so about 16 simulated minutes each.
DEFAULT_OPPORTUNITIES = 200_000
DEFAULT_MIN_CONFIDENCE = 0.5
#: Sharpe ratios are of the net P&L per simulated minute.
DEFAULT_PERIOD_S = 60.0
CONFIDENCE = FEATURES.index("confidence_score")
ENSEMBLE = "ensemble"

#: Strategy keys, in the report's order.
THRESHOLD = "threshold"
EXPECTED = "expected_profit"
ORACLE_EXPECTED = "oracle_expected_profit"
ORACLE_THRESHOLD = "oracle_threshold"
BASELINE = "baseline"
EVERYTHING = "execute_all"
FORESIGHT = "foresight"


class BacktestError(ApexStreamError):
    """A backtest that cannot be run as asked; the message names the fix."""


# --- histories ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class History:
    """Opportunities with known outcomes, in time order, from ``start`` to ``end``."""

    name: str
    start: float
    end: float
    data: Dataset
    seed: int | None = None  # the simulator's (None: the user's history)
    simulated: int = 0  # opportunities the simulator produced (including the left-out tail)
    tail_s: float = 0.0  # seconds left out at the end (the longest outcome delay)

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
    return History(f"seed {seed}", start, end, data.slice(0, kept), seed, opportunities, longest)


def user_history(name: str, data: Dataset) -> History:
    """The user's own labelled opportunities (``apex_stream.training.history.read_history``)."""
    if len(data) < 2:
        raise BacktestError(f"{name} has {len(data)} labelled opportunities: need at least 2")
    if np.any(np.diff(data.timestamp) < 0):
        raise BacktestError(f"{name}: rows must be in time order")
    start, end = float(data.timestamp[0]), float(data.timestamp[-1])
    return History(name, start, max(end, start + 1.0), data)


# --- scoring --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Scored:
    """The ensemble's view of a history: final score, the vote's (threshold rule's) decision,
    the expected profit at the score, and each member's score."""

    score: np.ndarray
    decision: np.ndarray
    expected: np.ndarray
    members: dict[str, np.ndarray]

    @property
    def scorers(self) -> dict[str, np.ndarray]:
        """The ensemble's score, then the members'."""
        return {ENSEMBLE: self.score, **self.members}


def score_history(
    ensemble: Ensemble,
    X: np.ndarray,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> Scored:
    """The ensemble over ``X`` in micro-batches of ``batch_size`` rows, as the worker scores them
    (each member imputes with its training means, then the configured voting). The decision is
    the ensemble's rule's: the backtest builds its ensemble with the threshold rule and takes
    the expected-profit gate from the scores (:func:`apex_stream.training.quality.gates`, the
    same computation as ``Scored.expected``)."""
    parts = []
    for i in range(0, len(X), batch_size):
        parts.append(ensemble.score(X[i : i + batch_size]))
        if on_batch is not None:
            on_batch(len(parts[-1].vote.score))
    if not parts:
        empty = np.empty(0)
        return Scored(empty, np.empty(0, dtype=bool), empty, {m: empty for m in MEMBERS})
    return Scored(
        np.concatenate([s.vote.score for s in parts]),
        np.concatenate([s.vote.decision for s in parts]),
        np.concatenate([s.expected_profit_usd for s in parts]),
        {m: np.concatenate([s.members[m] for s in parts]) for m in parts[0].members},
    )


def pool(
    histories: Sequence[History], scored: Sequence[Scored], period: float
) -> tuple[History, Scored]:
    """The histories one after another in time (each shifted to start on the period grid where
    the one before ended), so figures over all of them read as one longer history."""
    if len(histories) == 1:
        return histories[0], scored[0]
    first, offset, stamps = histories[0].start, 0.0, []
    for h in histories:
        stamps.append(h.data.timestamp - h.start + first + offset)
        offset += math.ceil((h.end - h.start) / period) * period
    d = [h.data for h in histories]
    data = Dataset(
        np.vstack([x.X for x in d]),
        np.concatenate([x.y for x in d]),
        np.concatenate([x.profit_usd for x in d]),
        np.concatenate(stamps),
        np.concatenate([x.truth for x in d]),
    )
    history = History(
        f"{len(histories)} seeds pooled",
        first,
        first + offset,
        data,
        simulated=sum(h.simulated for h in histories),
        tail_s=histories[0].tail_s,
    )
    merged = Scored(
        np.concatenate([s.score for s in scored]),
        np.concatenate([s.decision for s in scored]),
        np.concatenate([s.expected for s in scored]),
        {m: np.concatenate([s.members[m] for s in scored]) for m in scored[0].members},
    )
    return history, merged


# --- strategies -----------------------------------------------------------------------------


def strategies(
    history: History, scored: Scored, voting: VotingConfig, min_confidence: float
) -> dict[str, tuple[str, np.ndarray]]:
    """Each strategy's name and the rows it executes (the oracles only where the truth is
    known)."""
    d = history.data
    n = len(d)
    threshold, minimum = voting.threshold, voting.min_expected_profit_usd
    rows = {
        # the vote's own decision: majority and unanimous votes count their own way
        THRESHOLD: (f"threshold gate (score > {threshold:g})", scored.decision),
        EXPECTED: (
            f"expected-profit gate (> {minimum:g} USD)",
            gates(d.X, scored.score, threshold=threshold, minimum=minimum)["expected_profit"],
        ),
    }
    if has_truth(d.truth):
        oracle = gates(d.X, d.truth, threshold=threshold, minimum=minimum)
        rows[ORACLE_EXPECTED] = (
            "oracle expected-profit gate (truth as p)",
            oracle["expected_profit"],
        )
        rows[ORACLE_THRESHOLD] = (
            f"oracle threshold gate (truth > {threshold:g})",
            oracle["threshold"],
        )
    # the features are float32: compare the confidence in float32 too (monotone rounding)
    rows[BASELINE] = (
        f"baseline (confidence >= {min_confidence:g})",
        history.confidence >= np.float32(min_confidence),
    )
    rows[EVERYTHING] = ("execute all", np.ones(n, dtype=bool))
    rows[FORESIGHT] = ("perfect foresight", d.profit_usd > 0.0)
    return rows


@dataclass(frozen=True, eq=False)
class HistoryResult:
    """Every strategy's figures and every scorer's quality over one history."""

    history: History
    scored: Scored
    strategies: dict[str, StrategyResult]
    quality: dict[str, Quality]

    def share_of_oracle(self, key: str) -> float:
        """A strategy's net profit as a share of the oracle expected-profit gate's (NaN
        without the oracle, or when it made nothing)."""
        oracle = self.strategies.get(ORACLE_EXPECTED)
        if oracle is None or oracle.net_profit_usd <= 0:
            return math.nan
        return self.strategies[key].net_profit_usd / oracle.net_profit_usd


def analyse(
    history: History,
    scored: Scored,
    voting: VotingConfig,
    min_confidence: float,
    period: float,
) -> HistoryResult:
    """Strategy figures and score quality over one history."""
    d = history.data
    figures = partial(
        evaluate,
        profit=d.profit_usd,
        success=d.y > 0.5,
        timestamps=d.timestamp,
        start=history.start,
        end=history.end,
        period=period,
    )
    results = {
        key: figures(name, executed)
        for key, (name, executed) in strategies(history, scored, voting, min_confidence).items()
    }
    return HistoryResult(history, scored, results, quality(d.y, scored.scorers, d.truth))


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """The figures over every history, with what produced them."""

    #: one per simulator seed
    seeds: tuple[HistoryResult, ...]
    #: the seeds pooled (the seed itself when there is one; None without seeds)
    pooled: HistoryResult | None
    #: the user's history, when given
    user: HistoryResult | None
    min_confidence: float
    period: float
    versions: dict[str, str]
    providers: dict[str, str]
    #: the voting and decision rule the settings configure
    voting: VotingConfig
    batch_size: int
    #: simulator seeds of the shipped models' training segments (none of them is a history's)
    training_seeds: frozenset[int] = frozenset()
    seconds: float = 0.0

    @property
    def histories(self) -> tuple[HistoryResult, ...]:
        """The seeds one by one, then the user's history."""
        return (*self.seeds, *((self.user,) if self.user else ()))

    @property
    def headline(self) -> HistoryResult:
        """The pooled seeds, else the user's history."""
        result = self.pooled or self.user
        assert result is not None  # run_backtest needs seeds or the user's history
        return result


# --- the command ----------------------------------------------------------------------------


def run_backtest(
    settings: Settings,
    *,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    opportunities: int = DEFAULT_OPPORTUNITIES,
    user: tuple[str, Dataset] | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    period: float = DEFAULT_PERIOD_S,
    console: Console | None = None,
) -> BacktestResult:
    """Simulate each seed (``opportunities`` each), add the user's history (a name and its
    dataset) when given, score with the active ensemble and compare
    (:func:`apex_stream.lifecycle.backtest_report.write_report` writes the report)."""
    console = console or Console()
    began = time.perf_counter()
    if not seeds and user is None:
        raise BacktestError("nothing to backtest: give simulator seeds, the user's history or both")
    if len(set(seeds)) != len(seeds):
        raise BacktestError(f"seeds repeat: {list(seeds)}")
    registry = Registry(settings.models_dir)
    seen = training_seeds(registry)
    if overlap := sorted(set(seeds) & seen):
        raise BacktestError(
            f"seeds {overlap} are among the training segments' seeds {sorted(seen)}: their "
            "market paths were in the training data; pick other --seeds"
        )
    # the vote decides by threshold; both rules are applied to its scores (analyse)
    ensemble = Ensemble(settings.model_copy(update={"decision_rule": "threshold"}))
    voting = replace(ensemble.voting, rule=settings.decision_rule)
    histories: list[History] = []
    scored: list[Scored] = []
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        for seed in seeds:
            task = progress.add_task(
                f"simulating {opportunities:,} opportunities (seed {seed})", total=None
            )
            histories.append(simulate_history(seed, opportunities))
            progress.update(task, total=1, completed=1)
        if user is not None:
            histories.append(user_history(*user))
        for h in histories:
            advance = partial(
                progress.advance, progress.add_task(f"scoring {h.name}", total=len(h.data))
            )
            scored.append(score_history(ensemble, h.data.X, settings.batch_max_size, advance))
    analysed = partial(analyse, voting=voting, min_confidence=min_confidence, period=period)
    n = len(seeds)
    per_seed = tuple(analysed(h, s) for h, s in zip(histories[:n], scored[:n], strict=True))
    pooled = analysed(*pool(histories[:n], scored[:n], period)) if n else None
    result = BacktestResult(
        seeds=per_seed,
        pooled=pooled,
        user=analysed(histories[n], scored[n]) if user is not None else None,
        min_confidence=min_confidence,
        period=period,
        versions=ensemble.versions,
        providers=ensemble.providers,
        voting=voting,
        batch_size=settings.batch_max_size,
        training_seeds=seen,
        seconds=time.perf_counter() - began,
    )
    return result
