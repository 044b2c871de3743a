"""The growing-lag rule: a lag counts as growing only when it rose at every sample for at least
the window and stands at the floor or above; shrinking, holding or small lags are fine."""

from __future__ import annotations

from apex_stream.stream.lag import SAMPLE_EVERY_S, STALL_S, LagHistory, LagSample, reason

FLOOR, WINDOW = 10_000, 30.0


def samples(*records: int, every: float = 5.0) -> list[LagSample]:
    """One sample every ``every`` seconds from t = 100."""
    return [LagSample(100.0 + i * every, n) for i, n in enumerate(records)]


def why(*records: int, every: float = 5.0) -> str | None:
    return reason("opportunities", samples(*records, every=every), FLOOR, WINDOW)


def test_a_lag_rising_at_every_sample_over_the_window_is_reported() -> None:
    rising = (1_200, 5_000, 9_000, 15_000, 22_000, 30_000, 45_000)  # 30 s
    assert why(*rising) == (
        "consumer lag grew from 1,200 to 45,000 records over 30 s on opportunities"
    )


def test_the_rise_is_reported_from_where_it_started() -> None:
    assert why(500, 400, 1_000, 2_000, 4_000, 8_000, 12_000, 16_000, 20_000, 24_000) == (
        "consumer lag grew from 400 to 24,000 records over 40 s on opportunities"
    )


def test_a_lag_that_shrinks_holds_or_is_small_is_not() -> None:
    assert why() is None
    assert why(50_000) is None
    assert why(90_000, 80_000, 70_000, 60_000, 50_000, 40_000, 30_000) is None  # catching up
    assert why(40_000, 40_000, 40_000, 40_000, 40_000, 40_000, 40_000) is None  # a steady backlog
    assert why(100, 200, 400, 800, 1_600, 3_200, 6_400, 9_999) is None  # below the floor


def test_one_sample_that_does_not_rise_restarts_the_window() -> None:
    assert why(10_000, 20_000, 30_000, 30_000, 40_000, 50_000, 60_000) is None  # a hold
    assert why(10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 59_000) is None  # a dip at the end
    # risen for 30 s after the hold: reported from the hold
    assert why(30_000, 30_000, 31_000, 32_000, 33_000, 34_000, 35_000, 36_000) == (
        "consumer lag grew from 30,000 to 36,000 records over 30 s on opportunities"
    )


def test_a_rise_needs_the_window_and_enough_samples() -> None:
    assert why(20_000, 30_000, 40_000, 50_000, 60_000, 70_000) is None  # 25 s
    assert why(20_000, 30_000, 40_000, every=30.0) is None  # 60 s but only 3 samples
    assert why(20_000, 30_000, 40_000, 50_000, every=10.0) is not None  # 30 s, 4 samples


def test_the_history_samples_every_few_seconds_and_names_each_growing_topic() -> None:
    history = LagHistory(FLOOR, WINDOW)
    assert history.due(0.0) and history.reason(now=0.0) is None
    for i in range(7):
        now = i * SAMPLE_EVERY_S
        assert history.due(now)
        history.add(now, {"p.opportunities": 20_000 * (i + 1), "p.outcomes": 5})
        assert not history.due(now + SAMPLE_EVERY_S / 2)
    assert history.reason(now=30.0) == (
        "consumer lag grew from 20,000 to 140,000 records over 30 s on p.opportunities"
    )
    history.clear()
    assert history.reason(now=31.0) is None and history.due(31.0)


def test_no_sample_for_a_while_says_the_batch_path_is_stuck() -> None:
    history = LagHistory(FLOOR, WINDOW)
    history.add(100.0, {"p.opportunities": 10, "p.outcomes": 0})
    assert history.reason(now=100.0 + STALL_S) is None
    assert history.reason(now=100.0 + STALL_S + 12) == (
        f"the batch path has not come round for {STALL_S + 12:.0f} s"
    )
