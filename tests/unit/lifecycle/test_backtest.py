"""The backtest: its metrics against hand-computed cases, and one small run end to end whose
report and plot are written and whose figures agree with the decisions and outcomes."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from apex_stream.features import FEATURES
from apex_stream.inference.ensemble import Ensemble
from apex_stream.inference.registry import Registry
from apex_stream.lifecycle.backtest import (
    BacktestError,
    BacktestResult,
    drawdown,
    evaluate,
    max_drawdown,
    period_pnl,
    run_backtest,
    sharpe,
    training_seeds,
    win_rate,
)
from apex_stream.settings import Settings


def test_win_rate_counts_positive_profits() -> None:
    assert win_rate(np.array([1.0, -1.0, 0.0, 2.0])) == 0.5
    assert math.isnan(win_rate(np.array([])))


def test_period_pnl_sums_per_period_with_empty_periods_as_zero() -> None:
    t = np.array([100.0, 101.0, 159.9, 160.0, 290.0])
    pnl = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # 200 s in minutes: [100, 160) [160, 220) [220, 280) [280, 300]
    got = period_pnl(t, pnl, start=100.0, end=300.0, period=60.0)
    assert got.tolist() == [6.0, 4.0, 0.0, 5.0]
    # a trade exactly at the end belongs to the last period, not a new one
    assert period_pnl(
        np.array([120.0]), np.array([7.0]), start=0.0, end=120.0, period=60.0
    ).tolist() == [0.0, 7.0]
    # no trades: all periods 0
    assert period_pnl(np.array([]), np.array([]), start=0.0, end=90.0, period=60.0).tolist() == [
        0.0,
        0.0,
    ]
    with pytest.raises(ValueError):
        period_pnl(np.array([99.0]), np.array([1.0]), start=100.0, end=200.0, period=60.0)


def test_sharpe_is_mean_over_sample_std() -> None:
    # mean 2, sample std sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1
    assert sharpe(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)
    assert sharpe(np.array([1.0, 2.0, 3.0]), periods_per_year=4) == pytest.approx(4.0)
    # mean -1, sample std sqrt((1 + 1) / 1) = sqrt(2)
    assert sharpe(np.array([0.0, -2.0])) == pytest.approx(-1 / math.sqrt(2))
    assert math.isnan(sharpe(np.array([5.0])))
    assert math.isnan(sharpe(np.array([2.0, 2.0, 2.0])))


def test_max_drawdown_from_the_running_peak_starting_at_zero() -> None:
    # equity 1, 3, -1, 0, 3, 2; peak 1, 3, 3, 3, 3, 3
    pnl = np.array([1.0, 2.0, -4.0, 1.0, 3.0, -1.0])
    assert drawdown(pnl).tolist() == [0.0, 0.0, 4.0, 3.0, 0.0, 1.0]
    assert max_drawdown(pnl) == 4.0
    # losing from the start: the peak is the starting equity 0
    assert max_drawdown(np.array([-2.0, 1.0])) == 2.0
    assert max_drawdown(np.array([1.0, 2.0])) == 0.0
    assert max_drawdown(np.array([])) == 0.0


def test_evaluate_by_hand() -> None:
    profit = np.array([10.0, -3.0, 5.0, -1.0, 2.0])
    success = np.array([True, False, True, True, True])
    t = np.array([0.0, 10.0, 70.0, 80.0, 130.0])
    executed = np.array([True, True, False, True, True])
    s = evaluate(
        "x",
        executed,
        profit=profit,
        success=success,
        timestamps=t,
        start=0.0,
        end=150.0,
        period=60.0,
    )
    assert s.trades == 4
    assert s.net_profit_usd == 8.0  # 10 - 3 - 1 + 2
    assert s.win_rate == 0.5  # 10 and 2
    assert s.success_rate == 0.75
    assert s.profit_per_trade_usd == 2.0
    # per minute: [7, -1, 2], mean 8/3, sample std sqrt(((13/3)^2 + (11/3)^2 + (2/3)^2) / 2)
    assert s.sharpe == pytest.approx((8 / 3) / math.sqrt((169 + 121 + 4) / 9 / 2))
    # equity 10, 7, 6, 8: peak 10
    assert s.max_drawdown_usd == 4.0
    none = evaluate(
        "y",
        np.zeros(5, dtype=bool),
        profit=profit,
        success=success,
        timestamps=t,
        start=0.0,
        end=150.0,
        period=60.0,
    )
    assert none.trades == 0 and none.net_profit_usd == 0.0 and none.max_drawdown_usd == 0.0
    assert math.isnan(none.win_rate) and math.isnan(none.sharpe)


def test_training_seeds_are_refused(tmp_path: Path) -> None:
    settings = Settings()
    registry = Registry(settings.models_dir)
    seeds = training_seeds(registry)
    # `models train --seed S` simulates segments with seeds 8 S, ..., 8 S + 7 (1.0.0: 88-95)
    seed = int(registry.active("xgboost").metrics["seed"])
    assert seeds >= frozenset(range(8 * seed, 8 * seed + 8))
    with pytest.raises(BacktestError, match="training"):
        run_backtest(settings, seed=8 * seed + 2, opportunities=12_000, out=tmp_path)
    assert not (tmp_path / "report.md").exists()


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[BacktestResult, Path]:
    out = tmp_path_factory.mktemp("backtest")
    r = run_backtest(
        Settings(),
        seed=2027,
        opportunities=12_000,
        min_confidence=0.6,
        period=5.0,
        out=out,
        command="apex-stream backtest --test",
        console=Console(file=io.StringIO()),
    )
    return r, out


def test_backtest_end_to_end_figures_agree(result: tuple[BacktestResult, Path]) -> None:
    r, _ = result
    d = r.history.data
    assert 2_000 < len(d) < 12_000
    assert (d.timestamp >= r.history.start).all() and (d.timestamp <= r.history.end).all()
    decision = r.vote.decision
    assert np.array_equal(r.ml.executed, decision)
    assert r.ml.trades == int(decision.sum())
    assert r.ml.net_profit_usd == pytest.approx(float(d.profit_usd[decision].sum()))
    base = d.X[:, FEATURES.index("confidence_score")] >= np.float32(0.6)
    assert r.baseline.trades == int(base.sum())
    assert r.baseline.net_profit_usd == pytest.approx(float(d.profit_usd[base].sum()))
    assert r.everything.trades == len(d)
    assert r.everything.net_profit_usd == pytest.approx(float(d.profit_usd.sum()))
    for s in r.strategies:
        assert 0.0 <= s.win_rate <= 1.0 and s.max_drawdown_usd >= 0.0
        assert math.isfinite(s.sharpe)
    # micro-batching changes nothing: one batch over the whole history votes the same
    whole = Ensemble(Settings()).score(d.X).vote
    assert np.array_equal(whole.decision, decision)
    assert np.allclose(whole.score, r.vote.score)


def test_backtest_writes_report_and_plot(result: tuple[BacktestResult, Path]) -> None:
    r, out = result
    png = (out / "equity.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    report = (out / "report.md").read_text()
    assert "apex-stream backtest --test" in report
    assert "seed **2027**" in report and 2027 not in r.training_seeds
    assert f"{min(r.training_seeds)}-{max(r.training_seeds)}" in report
    assert ", ".join(f"{m} {v}" for m, v in r.versions.items()) in report
    for s in r.strategies:
        assert f"| {s.name} | {s.trades:,} |" in report
        assert f"{s.net_profit_usd:,.2f}" in report
    assert "![equity curves](equity.png)" in report
