"""The lifecycle controller's figures of an A/B arm."""

from __future__ import annotations

from types import SimpleNamespace

from apex_stream.lifecycle.controller import ArmFigures


def test_arm_figures_summarise_an_arm() -> None:
    arm = ArmFigures()
    row = SimpleNamespace(
        outcomes=100,
        trades=40,
        wins=30,
        successes=50,
        rejected_failures=40,
        profit=1234.5,
        latency_ms=700.0,
    )
    arm.add(row)
    arm.add(row)
    summary = arm.summary()
    assert summary["outcomes"] == 200 and summary["trades"] == 80
    assert summary["win_rate"] == 0.75  # wins / trades
    assert summary["accuracy"] == 0.7  # (wins + rejected failures) / outcomes
    assert summary["recall"] == 0.6  # wins / successes
    assert summary["realized_profit_usd"] == 2469.0
    assert summary["latency_ms_mean"] == 7.0
    assert ArmFigures().summary()["win_rate"] == 0.0
