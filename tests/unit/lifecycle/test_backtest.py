"""The backtest: its metrics against hand-computed cases, pooling by hand, and one small run end
to end (three held-out seeds and a history without hidden truth) whose figures agree with the
scores, the hidden truth and the outcomes, and whose report and plots are written."""

from __future__ import annotations

import io
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from apex_stream.features import FEATURES
from apex_stream.inference.decision import trade_values
from apex_stream.inference.ensemble import Ensemble
from apex_stream.inference.members import MEMBERS
from apex_stream.inference.registry import Registry
from apex_stream.lifecycle.backtest import (
    BASELINE,
    ENSEMBLE,
    EVERYTHING,
    EXPECTED,
    FORESIGHT,
    ORACLE_EXPECTED,
    ORACLE_THRESHOLD,
    START,
    THRESHOLD,
    BacktestError,
    BacktestResult,
    History,
    Scored,
    pool,
    run_backtest,
    training_seeds,
)
from apex_stream.lifecycle.backtest_report import write_report
from apex_stream.lifecycle.pnl import drawdown, evaluate, max_drawdown, period_pnl, sharpe, win_rate
from apex_stream.settings import Settings
from apex_stream.training.dataset import Dataset, simulate_run
from apex_stream.training.metrics import expected_calibration_error, roc_auc
from apex_stream.training.quality import TRUTH


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


def test_training_seeds_are_refused() -> None:
    settings = Settings()
    registry = Registry(settings.models_dir)
    seeds = training_seeds(registry)
    # `models train --seed S` simulates segments with seeds 8 S, ..., 8 S + 7 (1.0.0: 88-95)
    seed = int(registry.active("xgboost").metrics["seed"])
    assert seeds >= frozenset(range(8 * seed, 8 * seed + 8))
    with pytest.raises(BacktestError, match="training"):
        run_backtest(settings, seeds=(2027, 8 * seed + 2), opportunities=12_000)
    with pytest.raises(BacktestError, match="nothing to backtest"):
        run_backtest(settings, seeds=())


def dataset(t: list[float], profit: list[float], truth: float = 0.5) -> Dataset:
    n = len(t)
    return Dataset(
        np.zeros((n, len(FEATURES)), np.float32),
        np.array([p > 0 for p in profit], np.float32),
        np.array(profit),
        np.array(t),
        np.full(n, truth),
    )


def test_pooling_puts_the_histories_one_after_another_on_the_period_grid() -> None:
    a = History("seed 1", 100.0, 190.0, dataset([100.0, 150.0], [1.0, -2.0]), 1, 10, 5.0)
    b = History("seed 2", 100.0, 130.0, dataset([110.0, 130.0], [3.0, 4.0]), 2, 10, 5.0)
    scored = [
        Scored(np.array([0.9, 0.2]), np.array([True, False]), np.array([1.0, -1.0]), {}),
        Scored(np.array([0.6, 0.7]), np.array([True, True]), np.array([0.5, 2.0]), {}),
    ]
    history, merged = pool([a, b], scored, period=60.0)
    # a spans 90 s: two minutes on the grid, so b starts at 100 + 120
    assert history.data.timestamp.tolist() == [100.0, 150.0, 230.0, 250.0]
    assert (history.start, history.end) == (100.0, 100.0 + 120.0 + 60.0)
    assert history.data.profit_usd.tolist() == [1.0, -2.0, 3.0, 4.0]
    assert history.simulated == 20 and history.seed is None
    assert merged.decision.tolist() == [True, False, True, True]
    assert merged.expected.tolist() == [1.0, -1.0, 0.5, 2.0]
    # one history pools to itself
    assert pool([a], scored[:1], 60.0) == (a, scored[0])


@pytest.fixture(scope="module")
def user_data() -> Dataset:
    """A history of the user's own: labelled opportunities whose hidden truth nobody knows."""
    data = simulate_run(4242, START, 5_000, None)
    return replace(data, truth=np.full(len(data), np.nan))


@pytest.fixture(scope="module")
def result(
    tmp_path_factory: pytest.TempPathFactory, user_data: Dataset
) -> tuple[BacktestResult, Path]:
    out = tmp_path_factory.mktemp("backtest")
    r = run_backtest(
        Settings(),
        seeds=(2027, 2028, 2029),
        opportunities=12_000,
        user=("mine.parquet", user_data),
        min_confidence=0.6,
        period=5.0,
        console=Console(file=io.StringIO()),
    )
    write_report(r, out, "apex-stream backtest --test", Console(file=io.StringIO()))
    return r, out


def test_backtest_end_to_end_figures_agree(result: tuple[BacktestResult, Path]) -> None:
    r, _ = result
    assert [s.history.seed for s in r.seeds] == [2027, 2028, 2029]
    for h in r.histories:
        d, scored, s = h.history.data, h.scored, h.strategies
        assert 2_000 < len(d) < 12_000
        assert (d.timestamp >= h.history.start).all() and (d.timestamp <= h.history.end).all()
        # micro-batching changes nothing: one batch over the whole history scores the same
        whole = Ensemble(Settings()).score(d.X)
        assert np.array_equal(whole.vote.decision, scored.decision)
        assert np.allclose(whole.vote.score, scored.score)
        assert np.allclose(whole.expected_profit_usd, scored.expected)
        win, loss = trade_values(d.X)
        gates = {
            THRESHOLD: scored.score > 0.5,
            EXPECTED: scored.score * win - (1 - scored.score) * loss > 0,
            BASELINE: d.X[:, FEATURES.index("confidence_score")] >= np.float32(0.6),
            EVERYTHING: np.ones(len(d), dtype=bool),
            FORESIGHT: d.profit_usd > 0,
        }
        if h.history.seed is not None:
            gates[ORACLE_EXPECTED] = d.truth * win - (1 - d.truth) * loss > 0
            gates[ORACLE_THRESHOLD] = d.truth > 0.5
        assert s.keys() == gates.keys()
        for key, executed in gates.items():
            assert np.array_equal(s[key].executed, executed), key
            assert s[key].trades == int(executed.sum())
            assert s[key].net_profit_usd == pytest.approx(float(d.profit_usd[executed].sum()))
            assert 0.0 <= s[key].win_rate <= 1.0 and s[key].max_drawdown_usd >= 0.0
        assert s[FORESIGHT].net_profit_usd >= max(x.net_profit_usd for x in s.values())
    # the pooled seeds add up
    pooled = r.pooled
    assert pooled is not None and r.headline is pooled
    for key, s in pooled.strategies.items():
        assert s.trades == sum(h.strategies[key].trades for h in r.seeds)
        assert s.net_profit_usd == pytest.approx(
            sum(h.strategies[key].net_profit_usd for h in r.seeds)
        )
        assert math.isfinite(s.sharpe)


def test_the_oracle_comparison(result: tuple[BacktestResult, Path]) -> None:
    r, _ = result
    for h in (*r.seeds, r.pooled):
        assert h is not None
        oracle = h.strategies[ORACLE_EXPECTED].net_profit_usd
        assert oracle > 0
        assert h.share_of_oracle(EXPECTED) == h.strategies[EXPECTED].net_profit_usd / oracle
        assert h.share_of_oracle(ORACLE_EXPECTED) == 1.0
        d, scored = h.history.data, h.scored
        y = d.y
        assert h.quality[TRUTH].auc == roc_auc(y, d.truth)
        assert h.quality[ENSEMBLE].auc == roc_auc(y, scored.score)
        assert h.quality[ENSEMBLE].ece == expected_calibration_error(y, scored.score)
        for member in MEMBERS:
            assert h.quality[member].auc == roc_auc(y, scored.members[member])
        # nothing ranks these outcomes much better than the probability they were drawn from
        assert h.quality[ENSEMBLE].auc < h.quality[TRUTH].auc + 0.02
    # the user's history has no hidden truth: no oracle rows, no truth's AUC
    user = r.user
    assert user is not None
    assert (
        not {ORACLE_EXPECTED, ORACLE_THRESHOLD} & user.strategies.keys()
        and TRUTH not in user.quality
    )
    assert math.isnan(user.share_of_oracle(EXPECTED))
    assert user.quality.keys() == {ENSEMBLE, *MEMBERS}


def test_backtest_writes_report_and_plots(result: tuple[BacktestResult, Path]) -> None:
    r, out = result
    for name in ("equity.png", "reliability.png"):
        png = (out / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    report = (out / "report.md").read_text()
    assert "apex-stream backtest --test" in report
    for section in (
        "## Summary",
        "## Histories",
        "## Score quality: AUC against the hidden truth's, calibration",
        "## Decision rules: 3 seeds pooled",
        "## Decision rules: mine.parquet",
        "## Definitions",
    ):
        assert section in report, section
    assert "![reliability plot](reliability.png)" in report
    assert "![equity curves](equity.png)" in report
    assert f"{min(r.training_seeds)}-{max(r.training_seeds)}" in report
    assert ", ".join(f"{m} {v}" for m, v in r.versions.items()) in report
    assert "| seed 2027 | seed 2028 | seed 2029 | mine.parquet |" in report
    pooled = r.headline
    for s in pooled.strategies.values():
        assert f"| {s.name} | {s.trades:,} |" in report
        assert f"{s.net_profit_usd:,.2f}" in report
    share = pooled.share_of_oracle(EXPECTED)
    assert (
        f"| expected-profit gate / oracle expected-profit gate (net profit) | {share:.1%}" in report
    )
    auc = pooled.quality[ENSEMBLE].auc / pooled.quality[TRUTH].auc
    assert f"| ensemble AUC / hidden truth's AUC | {auc:.3f}" in report
    assert "oracle rows left out" in report
    assert "The worker decides by the threshold rule" in report


def test_the_command_backtests_the_shipped_history_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from apex_stream.cli import main

    example = Path(__file__).resolve().parents[3] / "examples" / "history.csv"
    args = ["backtest", "--seeds", "", "--history", str(example), "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args, env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report.md").read_text()
    assert "## Decision rules: history.csv" in report
    assert "| expected-profit gate (> 0 USD) |" in report
    # no hidden truth in a user's history: no oracle rows, and the report says so
    assert "| oracle" not in report and "oracle rows left out" in report
    assert (tmp_path / "reliability.png").exists() and (tmp_path / "equity.png").exists()


def test_both_rules_are_reported_whichever_the_worker_uses(tmp_path: Path) -> None:
    settings = Settings(decision_rule="expected_profit", min_expected_profit_usd=1.0)
    quiet = Console(file=io.StringIO())
    r = run_backtest(settings, seeds=(2030,), opportunities=12_000, console=quiet)
    [seed] = r.seeds
    assert r.voting.rule == "expected_profit" and r.pooled is not None
    scored, strategies = seed.scored, seed.strategies
    assert np.array_equal(strategies[THRESHOLD].executed, scored.score > 0.5)
    assert np.array_equal(strategies[EXPECTED].executed, scored.expected > 1.0)
    write_report(r, tmp_path, "apex-stream backtest --seeds 2030", quiet)
    report = (tmp_path / "report.md").read_text()
    assert "The worker decides by the expected-profit rule (expected profit > 1 USD)" in report
    assert "| expected-profit gate (> 1 USD) |" in report
    assert "| threshold gate (score > 0.5) |" in report
