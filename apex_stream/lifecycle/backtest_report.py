"""The backtest's report (markdown), equity curves and reliability plot, from its figures."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console

from ..inference.members import MEMBERS
from ..training.dataset import DAY_START
from ..training.quality import TRUTH, matplotlib_figure, plot_reliability, share_of_truth
from .backtest import (
    BASELINE,
    ENSEMBLE,
    EVERYTHING,
    EXPECTED,
    ORACLE_EXPECTED,
    THRESHOLD,
    BacktestResult,
    HistoryResult,
)
from .pnl import drawdown

#: The issue's figures to reach on held-out simulator seeds.
AUC_SHARE_TARGET = 0.98
ECE_TARGET = 0.02
ORACLE_SHARE_TARGET = 0.90


def _usd(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.2f}"


def _ratio(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def _share(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1%}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seed_range(seeds: frozenset[int]) -> str:
    ordered = sorted(seeds)
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(map(str, ordered)) or "(not recorded in the manifest)"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def summary(result: BacktestResult) -> str:
    """The issue's figures on the pooled seeds, each against its target."""
    r = result.pooled
    if r is None or ORACLE_EXPECTED not in r.strategies:
        return "No simulator seeds were run, so there is no hidden truth to compare with."
    q = r.quality
    auc_share = share_of_truth(q, ENSEMBLE)
    ece = q[ENSEMBLE].ece
    ep, thr = r.strategies[EXPECTED].net_profit_usd, r.strategies[THRESHOLD].net_profit_usd
    oracle_share = r.share_of_oracle(EXPECTED)
    oracle = r.strategies[ORACLE_EXPECTED].net_profit_usd
    rows = [
        (
            "ensemble AUC / hidden truth's AUC",
            f"{auc_share:.3f} ({q[ENSEMBLE].auc:.4f} / {q[TRUTH].auc:.4f})",
            f">= {AUC_SHARE_TARGET:g}",
            _met(auc_share >= AUC_SHARE_TARGET),
        ),
        ("ensemble ECE", f"{ece:.4f}", f"<= {ECE_TARGET:g}", _met(ece <= ECE_TARGET)),
        (
            "expected-profit gate / oracle expected-profit gate (net profit)",
            f"{_share(oracle_share)} ({_usd(ep)} / {_usd(oracle)} USD)",
            f">= {ORACLE_SHARE_TARGET:.0%}",
            _met(oracle_share >= ORACLE_SHARE_TARGET),
        ),
        (
            "expected-profit gate - threshold gate (net profit)",
            f"{_usd(ep - thr)} USD ({_usd(ep)} vs {_usd(thr)})",
            "> 0",
            _met(ep > thr),
        ),
    ]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    return (
        f"Over {r.history.name} ({len(r.history.data):,} opportunities):\n\n"
        "| figure | measured | target | |\n|---|---|---|---|\n" + table
    )


def histories_table(result: BacktestResult) -> str:
    rows = []
    for r in result.histories:
        h = r.history
        minutes = (h.end - h.start) / 60.0
        if h.seed is not None:
            source = (
                f"simulator seed {h.seed}: {h.simulated:,} simulated, the last "
                f"{h.tail_s:.1f} s left out"
            )
        else:
            source = "your history (no hidden truth: oracle rows left out)"
        rows.append(
            f"| {h.name} | {len(h.data):,} | {minutes:,.1f} | {_iso(h.start)} | "
            f"{h.data.y.mean():.1%} | {source} |"
        )
    return (
        "| history | opportunities | minutes | from | success rate | source |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def history_notes(result: BacktestResult) -> str:
    notes = []
    if result.seeds:
        notes.append(
            "- Simulator histories are unseen by the models: they were trained on "
            f"{_iso(DAY_START)[:10]}\n  with simulator segment seeds "
            f"{_seed_range(result.training_seeds)}; each history here is another seed, one\n"
            "  contiguous run from a week later. The last seconds of each run (the longest "
            "outcome\n  delay) are left out, so every backtested opportunity has its outcome."
        )
    notes.append(
        "- Features computed exactly as the worker computes them "
        "(`apex_stream/training/dataset.py`"
        + (", `apex_stream/training/history/` for your history)." if result.user else ").")
    )
    if len(result.seeds) > 1:
        notes.append(
            "- Pooled: the seeds one after another in time, so P&L, Sharpe and drawdown run "
            "through all."
        )
    return "\n".join(notes)


def quality_table(result: BacktestResult) -> str:
    """AUC per history and pooled, the share of the truth's AUC and the ECE of each scorer."""
    columns = [
        *result.seeds,
        *((result.pooled,) if result.pooled and len(result.seeds) > 1 else ()),
    ]
    if result.user is not None:
        columns.append(result.user)
    headline = result.headline
    names = [n for n in (TRUTH, ENSEMBLE, *MEMBERS) if n in headline.quality]
    header = (
        "| scorer | "
        + " | ".join(f"AUC {r.history.name}" for r in columns)
        + f" | AUC / truth's ({headline.history.name}) | ECE ({headline.history.name}) |"
    )
    rule = "|---" * (len(columns) + 3) + "|"
    rows = []
    for name in names:
        aucs = " | ".join(
            f"{r.quality[name].auc:.4f}" if name in r.quality else "n/a" for r in columns
        )
        share = share_of_truth(headline.quality, name)
        rows.append(f"| {name} | {aucs} | {_ratio(share)} | {headline.quality[name].ece:.4f} |")
    return "\n".join([header, rule, *rows])


def strategies_table(r: HistoryResult, period: str) -> str:
    header = (
        "| strategy | trades | win rate | success rate | net profit (USD) | per trade (USD) "
        f"| of the oracle EP gate | Sharpe (per {period}) | max drawdown (USD) |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    rows = "\n".join(
        f"| {s.name} | {s.trades:,} | {_share(s.win_rate)} | {_share(s.success_rate)} | "
        f"{_usd(s.net_profit_usd)} | {_usd(s.profit_per_trade_usd)} | "
        f"{_share(r.share_of_oracle(key))} | {_ratio(s.sharpe)} | {_usd(s.max_drawdown_usd)} |"
        for key, s in r.strategies.items()
    )
    return f"{header}\n{rows}"


def per_history_profit(result: BacktestResult) -> str:
    """Net profit of every strategy in every history side by side."""
    columns = result.histories
    keys = list(result.headline.strategies)
    for r in columns:
        keys += [k for k in r.strategies if k not in keys]
    header = "| strategy | " + " | ".join(r.history.name for r in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = []
    for key in keys:
        name = next(r.strategies[key].name for r in columns if key in r.strategies)
        cells = " | ".join(
            _usd(r.strategies[key].net_profit_usd) if key in r.strategies else "n/a"
            for r in columns
        )
        rows.append(f"| {name} | {cells} |")
    ratios = " | ".join(_share(r.share_of_oracle(EXPECTED)) for r in columns)
    rows.append(f"| *expected-profit gate / oracle expected-profit gate* | {ratios} |")
    return "\n".join([header, rule, *rows])


def render_report(
    result: BacktestResult,
    command: str,
    equity: str = "equity.png",
    reliability: str = "reliability.png",
) -> str:
    """The markdown report."""
    r, v = result, result.voting
    voting = f"`{v.strategy}`, threshold {v.threshold:g}"
    if v.strategy == "weighted":
        weights = ", ".join(f"{m} {w:g}" for m, w in v.weights.items())
        voting += f", weights {weights}, online weight {v.online_weight:g}"
    rule = (
        f"the threshold rule (score > {v.threshold:g})"
        if v.rule == "threshold"
        else f"the expected-profit rule (expected profit > {v.min_expected_profit_usd:g} USD)"
    )
    vote_share = (
        f"\n- With `{v.strategy}` voting the score is a share of votes, not a probability: the "
        "expected-profit rows read it as one (the worker refuses that rule with this voting)."
        if v.strategy in ("majority", "unanimous")
        else ""
    )
    period = f"{r.period:g} s" if r.period != 60.0 else "minute"
    versions = ", ".join(f"{m} {ver}" for m, ver in r.versions.items())
    providers = ", ".join(f"{m} on {p}" for m, p in r.providers.items())
    headline = r.headline
    sections = [
        f"""# Backtest: decision rules against the oracle

```bash
{command}
```

## Summary

{summary(r)}

## Histories

{histories_table(r)}

{history_notes(r)}

## Models

- Active ensemble from `models/manifest.json`: {versions} ({providers}).
- Voting from settings: {voting}. The worker decides by {rule} (`APEX_DECISION_RULE`); the
  backtest reports both rules.{vote_share}
- Scored in micro-batches of {r.batch_size:,} rows (`APEX_BATCH_MAX_SIZE`). The online learner
  scores as shipped: it does not learn from outcomes during the replay.

## Score quality: AUC against the hidden truth's, calibration

{quality_table(r)}

![reliability plot]({reliability})

## Decision rules: {headline.history.name}

{strategies_table(headline, period)}

### Net profit (USD) in each history

{per_history_profit(r)}

![equity curves]({equity})
""",
    ]
    if r.user is not None and r.user is not headline:
        sections.append(
            f"""## Decision rules: {r.user.history.name}

{strategies_table(r.user, period)}

The hidden truth of this history is unknown, so the oracle gates are left out. If the models
were trained on this history, these figures are in-sample.
"""
        )
    sections.append(
        f"""## Definitions

- **Expected profit** of an opportunity at probability `p`: `p * win - (1 - p) * loss`, with
  `win` the scanner's quoted net profit (`profit_usd`) and `loss` the quoted gas cost
  (`expected_output - input_amount - profit_usd`): what a success earns and what a revert
  burns (`apex_stream/inference/decision.py`).
- **Threshold gate**: the vote's decision, score above `APEX_THRESHOLD`. **Expected-profit
  gate**: expected profit at the ensemble's score above `APEX_MIN_EXPECTED_PROFIT_USD`.
- **Oracle gates**: the same rules with the simulator's hidden success probability as `p`
  (the probability each outcome was drawn from): what each rule earns with a perfect
  probability. "Of the oracle EP gate" is a net profit as a share of the oracle
  expected-profit gate's. **Perfect foresight** executes exactly the outcomes that made money
  (hindsight; no rule can). **Baseline**: what the scanner proposes with
  `confidence_score >= {r.min_confidence:g}`.
- **AUC** of each scorer against the outcomes; the hidden truth's AUC is the best any model
  can reach on these outcomes. **ECE**: the row-weighted mean gap between mean predicted
  probability and observed success rate over 10 equal-width bins; the **reliability plot**
  draws those bins (a calibrated scorer lies on the diagonal).
- **Net profit**: the sum of `realized_profit_usd` of the executed opportunities' outcomes.
  That field is already after gas (the simulator books `output - input - gas_cost_usd` on
  success and `-gas_cost_usd` on a revert), so gas is counted exactly once.
- **Win rate**: share of trades with a positive net profit; **success rate**: share whose
  transaction succeeded on chain (a success can still lose money to output slippage and gas).
- **Sharpe**: mean / standard deviation (ddof 1) of the net P&L per {period} (periods without
  trades count as 0; P&L is booked at the opportunity's timestamp). No risk-free rate and
  **not annualised**.
- **Max drawdown**: the largest fall of cumulative net P&L from its running peak, trade by
  trade, starting from 0.

Ran in {r.seconds:.1f} s.
"""
    )
    return "\n".join(sections)


#: Strategies drawn on the equity curves, and how.
_STYLES: dict[str, dict[str, object]] = {
    THRESHOLD: {"color": "tab:blue", "lw": 1.6},
    EXPECTED: {"color": "tab:green", "lw": 1.6},
    ORACLE_EXPECTED: {"color": "tab:green", "lw": 1.0, "ls": "--"},
    BASELINE: {"color": "tab:orange", "lw": 1.4},
    EVERYTHING: {"color": "0.55", "lw": 1.0, "ls": "--"},
}


def plot_equity(result: BacktestResult, path: Path) -> None:
    """Per history: cumulative net P&L of each drawn strategy over time, its drawdown below."""
    Figure, FigureCanvasAgg = matplotlib_figure()
    from matplotlib.ticker import StrMethodFormatter  # importable: matplotlib is

    histories = result.histories
    fig = Figure(figsize=(6.5 * len(histories), 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(histories), sharex="col", height_ratios=(3, 1), squeeze=False)
    for column, r in enumerate(histories):
        h = r.history
        equity_ax, dd_ax = axes[0, column], axes[1, column]
        minutes = (h.data.timestamp - h.start) / 60.0
        # at most ~4000 points per line: the curve's shape without megabytes of vertices
        step = max(1, len(minutes) // 4000)
        for key, style in _STYLES.items():
            if key not in r.strategies:
                continue
            s = r.strategies[key]
            pnl = np.where(s.executed, h.data.profit_usd, 0.0)
            equity, dd = np.cumsum(pnl), drawdown(pnl)
            idx = np.unique(np.r_[np.arange(0, len(equity), step), len(equity) - 1])
            equity_ax.plot(minutes[idx], equity[idx], label=s.name, **style)
            dd_ax.plot(minutes[idx], -dd[idx], **style)
        equity_ax.set_title(f"{h.name}, {len(h.data):,} opportunities")
        equity_ax.set_ylabel("cumulative net P&L (USD)")
        equity_ax.legend(loc="upper left", fontsize=8)
        equity_ax.grid(alpha=0.3)
        dd_ax.set_ylabel("drawdown (USD)")
        dd_ax.set_xlabel(f"minutes from {_iso(h.start)}")
        dd_ax.grid(alpha=0.3)
        for ax in (equity_ax, dd_ax):
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    versions = ", ".join(f"{m} {v}" for m, v in result.versions.items())
    fig.suptitle(f"Backtest ({versions}; {result.voting.strategy} voting)")
    fig.savefig(path, dpi=110)


def plot_quality(result: BacktestResult, path: Path) -> None:
    """The reliability plot: the ensemble, its members and (where known) the hidden truth, on
    the pooled seeds and on the user's history."""
    panels = {}
    for r in (result.pooled, result.user):
        if r is None:
            continue
        d = r.history.data
        scorers = r.scored.scorers
        if TRUTH in r.quality:
            scorers[TRUTH] = d.truth
        panels[r.history.name] = (d.y, scorers)
    plot_reliability(panels, path)


def write_report(
    result: BacktestResult, out: Path, command: str, console: Console | None = None
) -> None:
    """``report.md``, ``equity.png`` and ``reliability.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with (console or Console()).status("plotting"):
        plot_equity(result, out / "equity.png")
        plot_quality(result, out / "reliability.png")
    (out / "report.md").write_text(render_report(result, command))
