"""`apex-stream backtest`: held-out simulated history (and the user's own) through the active
ensemble, both decision rules against the oracle, as a report."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from rich.table import Table

from ..settings import get_settings
from .common import console


def _seeds(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in value.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give seeds as 2027,2028,2029") from None


@click.command()
@click.option(
    "--seeds",
    default="2027,2028,2029",
    show_default=True,
    callback=_seeds,
    help="Simulator seeds of the held-out histories, comma-separated (never a training "
    "segment's seed); '' for none (with --history).",
)
@click.option(
    "--opportunities",
    type=click.IntRange(min=10_000),
    default=200_000,
    show_default=True,
    help="Simulated opportunities per seed (200 per simulated second).",
)
@click.option(
    "--history",
    "history_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Your own history (the file or folder `models train --from` reads): backtested "
    "beside the seeds, without the oracle rows (its hidden truth is unknown).",
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
    help="Folder for report.md, equity.png and reliability.png.",
)
def backtest(
    seeds: tuple[int, ...],
    opportunities: int,
    history_path: Path | None,
    min_confidence: float,
    period: float,
    out: str,
) -> None:
    """Replay held-out history through the active ensemble: the threshold and expected-profit
    rules against the oracle and the scanner's confidence, AUC, ECE and reliability."""
    from ..lifecycle.backtest import run_backtest
    from ..lifecycle.backtest_report import summary, write_report

    user = None
    if history_path is not None:
        from ..training.history import read_history

        user = (history_path.name, read_history(history_path, console=console))
    command = shlex.join(
        [
            "apex-stream",
            "backtest",
            *("--seeds", ",".join(map(str, seeds)), "--opportunities", str(opportunities)),
            *(("--history", str(history_path)) if history_path is not None else ()),
            *("--min-confidence", f"{min_confidence:g}", "--period", f"{period:g}"),
            *("--out", out),
        ]
    )
    result = run_backtest(
        get_settings(),
        seeds=seeds,
        opportunities=opportunities,
        user=user,
        min_confidence=min_confidence,
        period=period,
        console=console,
    )
    write_report(result, Path(out), command, console)
    headline = result.headline
    table = Table(
        "strategy",
        "trades",
        "win rate",
        "net profit (USD)",
        "of oracle EP",
        "Sharpe",
        "max drawdown (USD)",
        title=headline.history.name,
    )
    for key, s in headline.strategies.items():
        share = headline.share_of_oracle(key)
        table.add_row(
            s.name,
            f"{s.trades:,}",
            f"{s.win_rate:.1%}",
            f"{s.net_profit_usd:,.2f}",
            "n/a" if share != share else f"{share:.1%}",
            "n/a" if s.sharpe != s.sharpe else f"{s.sharpe:.3f}",
            f"{s.max_drawdown_usd:,.2f}",
        )
    console.print(table)
    console.print(summary(result))
    folder = Path(out)
    console.print(
        f"wrote {folder / 'report.md'}, {folder / 'equity.png'} and {folder / 'reliability.png'}"
    )
