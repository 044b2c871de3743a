"""`apex-stream backtest`: simulated history through the active ensemble, as a report."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from rich.table import Table

from ..settings import get_settings
from .common import console


@click.command()
@click.option(
    "--seed",
    default=2027,
    show_default=True,
    help="Simulator seed of the history (never a training segment's seed).",
)
@click.option(
    "--opportunities",
    type=click.IntRange(min=10_000),
    default=600_000,
    show_default=True,
    help="Simulated opportunities (200 per simulated second).",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Baseline: execute what the scanner proposes with confidence_score >= this.",
)
@click.option(
    "--period",
    type=click.FloatRange(min=0.0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds of simulated time per Sharpe period.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="bench/backtest",
    show_default=True,
    help="Folder for report.md and equity.png.",
)
def backtest(seed: int, opportunities: int, min_confidence: float, period: float, out: str) -> None:
    """Replay simulated history through the active ensemble: ML gate vs scanner confidence."""
    from ..lifecycle.backtest import run_backtest

    command = shlex.join(
        [
            "apex-stream",
            "backtest",
            *("--seed", str(seed), "--opportunities", str(opportunities)),
            *("--min-confidence", f"{min_confidence:g}", "--period", f"{period:g}"),
            *("--out", out),
        ]
    )
    result = run_backtest(
        get_settings(),
        seed=seed,
        opportunities=opportunities,
        min_confidence=min_confidence,
        period=period,
        out=Path(out),
        command=command,
        console=console,
    )
    table = Table(
        "strategy", "trades", "win rate", "net profit (USD)", "Sharpe", "max drawdown (USD)"
    )
    for s in result.strategies:
        table.add_row(
            s.name,
            f"{s.trades:,}",
            f"{s.win_rate:.1%}",
            f"{s.net_profit_usd:,.2f}",
            f"{s.sharpe:.3f}",
            f"{s.max_drawdown_usd:,.2f}",
        )
    console.print(table)
    console.print(f"wrote {Path(out) / 'report.md'} and {Path(out) / 'equity.png'}")
