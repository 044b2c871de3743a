"""The decision rules by hand: what a trade wins and loses read from the features, its expected
profit, the expected-profit gate, the setting, and the ensemble deciding by the configured rule."""

from __future__ import annotations

import time

import numpy as np
import pytest

from apex_stream.events import Opportunity
from apex_stream.features import MarketState, opportunity_features
from apex_stream.inference.decision import expected_profit, expected_profit_gate, trade_values
from apex_stream.inference.ensemble import Ensemble
from apex_stream.inference.voting import VotingConfig, VotingError
from apex_stream.settings import Settings


def quoted(input_amount: float, expected_output: float, profit_usd: float) -> Opportunity:
    return Opportunity(
        opportunity_id="o",
        route_id="r",
        chain="ethereum",
        tokens=["WETH", "USDC"],
        dexes=["uniswap", "sushiswap"],
        input_amount=input_amount,
        expected_output=expected_output,
        gas_estimate=200_000,
        profit_usd=profit_usd,
        confidence_score=0.8,
        timestamp=time.time(),
    )


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    """Three quotes: gross 50 USD of which 20 is gas; gross 10 and gas 15 (a success loses
    5 USD); output below input (gross -4) and gas 6."""
    opportunities = [
        quoted(10_000.0, 10_050.0, 30.0),
        quoted(2_000.0, 2_010.0, -5.0),
        quoted(1_000.0, 996.0, -10.0),
    ]
    return opportunity_features(opportunities, MarketState())


def test_win_is_the_quoted_profit_and_loss_the_quoted_gas(X: np.ndarray) -> None:
    win, loss = trade_values(X)
    np.testing.assert_allclose(win, [30.0, -5.0, -10.0])
    # gross - net = gas; float32 features: within 6e-8 of the input amount
    np.testing.assert_allclose(loss, [20.0, 15.0, 6.0], atol=1e-3)


def test_expected_profit_by_hand() -> None:
    win, loss = np.array([30.0, 30.0, -5.0, 0.0]), np.array([20.0, 20.0, 15.0, 0.0])
    p = np.array([0.6, 0.3, 0.99, 0.7])
    # 0.6*30 - 0.4*20 = 10; 0.3*30 - 0.7*20 = -5; 0.99*-5 - 0.01*15 = -5.1; nothing at stake: 0
    np.testing.assert_allclose(expected_profit(p, win, loss), [10.0, -5.0, -5.1, 0.0])
    # execute strictly above the minimum; NaN (a missing value) never executes
    gate = expected_profit_gate(np.array([10.0, -5.0, 0.0, np.nan]))
    assert gate.tolist() == [True, False, False, False]
    assert expected_profit_gate(np.array([10.0, 12.0]), minimum=10.0).tolist() == [False, True]


def test_the_rule_differs_from_a_threshold_where_stakes_are_lopsided() -> None:
    # a 0.3 chance at 100 USD against 10 USD of gas is worth it (30 - 7 = 23); a 0.8 chance at
    # 1 USD against 10 USD of gas is not (0.8 - 2 = -1.2): a 0.5 threshold decides both wrong
    p = np.array([0.3, 0.8])
    ep = expected_profit(p, np.array([100.0, 1.0]), np.array([10.0, 10.0]))
    np.testing.assert_allclose(ep, [23.0, -1.2])
    assert expected_profit_gate(ep).tolist() == [True, False]
    assert (p > 0.5).tolist() == [False, True]


def test_the_rule_is_a_setting_and_needs_a_probability(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().decision_rule == "threshold" and Settings().min_expected_profit_usd == 0
    monkeypatch.setenv("APEX_DECISION_RULE", "expected_profit")
    monkeypatch.setenv("APEX_MIN_EXPECTED_PROFIT_USD", "2.5")
    settings = Settings()
    assert settings.decision_rule == "expected_profit"
    assert settings.min_expected_profit_usd == 2.5
    monkeypatch.setenv("APEX_DECISION_RULE", "kelly")
    with pytest.raises(ValueError, match="decision_rule"):
        Settings()
    VotingConfig(strategy="weighted", rule="expected_profit")
    for strategy in ("majority", "unanimous"):
        with pytest.raises(VotingError, match="share of votes"):
            VotingConfig(strategy=strategy, rule="expected_profit")  # type: ignore[arg-type]
    with pytest.raises(VotingError, match="unknown decision rule"):
        VotingConfig(rule="kelly")  # type: ignore[arg-type]


def test_the_ensemble_decides_by_the_configured_rule(simulated) -> None:
    X = simulated[0]
    win, loss = trade_values(X)
    by_threshold = Ensemble(Settings()).score(X)
    expected = by_threshold.vote.score * win - (1 - by_threshold.vote.score) * loss
    np.testing.assert_allclose(by_threshold.expected_profit_usd, expected, rtol=1e-12)
    np.testing.assert_array_equal(by_threshold.vote.decision, by_threshold.vote.score > 0.5)

    ensemble = Ensemble(Settings(decision_rule="expected_profit", min_expected_profit_usd=0.5))
    by_profit = ensemble.score(X)
    assert by_profit.voting.rule == "expected_profit"
    np.testing.assert_array_equal(by_profit.vote.score, by_threshold.vote.score)
    np.testing.assert_array_equal(by_profit.vote.decision, expected > 0.5)
    # the two rules disagree on some of this traffic, and a request's threshold changes nothing
    assert (by_profit.vote.decision != by_threshold.vote.decision).any()
    np.testing.assert_array_equal(ensemble.score(X, threshold=0.9).vote.decision, expected > 0.5)
