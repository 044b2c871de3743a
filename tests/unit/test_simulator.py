"""The market simulator: determinism, valid events, route and timing invariants, and a ground
truth that behaves as documented both as a function and in the outcomes it drives."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest

from apex_stream.events import Opportunity, Outcome, PriceTick, decode, encode
from apex_stream.simulator import MarketSimulator, SimConfig, Step, TruthInputs, success_probability
from apex_stream.simulator.engine import delay_range
from apex_stream.simulator.routes import route_id
from apex_stream.simulator.truth import P_MAX, P_MIN


@dataclasses.dataclass
class Sample:
    """A simulated stream joined up: opportunities with their truth and (if settled) outcome."""

    sim: MarketSimulator
    steps: list[Step]
    opportunities: list[Opportunity]
    outcomes: list[Outcome]
    p: np.ndarray
    truth: TruthInputs
    #: Seconds from the start to each opportunity.
    times: np.ndarray
    settled: np.ndarray
    success: np.ndarray


def _sample(seed: int, **run: float) -> Sample:
    sim = MarketSimulator(seed, config=SimConfig(regime_shift_at=run.pop("shift", None)))
    start = sim.now
    steps = list(sim.run(**run))
    opportunities = [o for s in steps for o in s.opportunities]
    outcomes = [o for s in steps for o in s.outcomes]
    result = {o.opportunity_id: o.success for o in outcomes}
    truth = TruthInputs(
        **{
            f.name: np.concatenate([getattr(s.truth_inputs, f.name) for s in steps])
            for f in dataclasses.fields(TruthInputs)
        }
    )
    return Sample(
        sim,
        steps,
        opportunities,
        outcomes,
        np.concatenate([s.success_probability for s in steps]),
        truth,
        np.array([o.timestamp for o in opportunities]) - start,
        np.array([o.opportunity_id in result for o in opportunities]),
        np.array([result.get(o.opportunity_id, False) for o in opportunities]),
    )


@pytest.fixture(scope="module")
def sample() -> Sample:
    return _sample(7, opportunities=40_000)


@pytest.fixture(scope="module")
def shifted() -> Sample:
    return _sample(11, duration=240.0, shift=120.0)


def _encoded(seed: int) -> list[bytes]:
    steps = MarketSimulator(seed).run(duration=10.0)
    return [encode(e) for s in steps for e in (*s.prices, *s.opportunities, *s.outcomes)]


def _gap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Difference of two success rates and its standard error."""
    pa, pb = a.mean(), b.mean()
    return pa - pb, math.sqrt(pa * (1 - pa) / len(a) + pb * (1 - pb) / len(b))


# --- determinism and validity -------------------------------------------------------------------


def test_same_seed_replays_the_same_stream_and_another_seed_does_not() -> None:
    first = _encoded(1)
    assert len(first) > 2_000
    assert first == _encoded(1)
    assert first != _encoded(2)


def test_every_event_decodes_back_to_itself(sample: Sample) -> None:
    for step in sample.steps[:300]:
        for cls, events in (
            (PriceTick, step.prices),
            (Opportunity, step.opportunities),
            (Outcome, step.outcomes),
        ):
            for event in events:
                assert decode(encode(event), cls) == event


def test_events_are_time_ordered_within_their_window() -> None:
    sim = MarketSimulator(3)
    for dt in (0.05, 0.1, 0.37, 1.0, 2.5, 0.0):
        before = sim.now
        step = sim.advance(dt)
        assert sim.now == pytest.approx(before + dt)
        for stamps in (
            [e.timestamp for e in step.prices],
            [e.timestamp for e in step.opportunities],
            [e.executed_at for e in step.outcomes],
        ):
            assert stamps == sorted(stamps)
            assert all(before < t <= sim.now for t in stamps)
        assert len(step.success_probability) == len(step.opportunities)


def test_run_stops_at_exactly_n_opportunities_or_at_the_duration() -> None:
    steps = list(MarketSimulator(5).run(opportunities=1_234))
    assert sum(len(s.opportunities) for s in steps) == 1_234
    assert len(steps[-1].success_probability) == len(steps[-1].opportunities)
    cutoff = steps[-1].opportunities[-1].timestamp
    assert all(e.timestamp <= cutoff for e in steps[-1].prices)
    sim = MarketSimulator(5)
    start = sim.now
    assert len(list(sim.run(duration=5.0, dt=0.3))) == 17
    assert sim.now == pytest.approx(start + 5.0)


def test_default_rates(sample: Sample) -> None:
    seconds = sample.times[-1]
    assert 180 < len(sample.opportunities) / seconds < 220
    chains = {c.name: c for c in sample.sim.config.chains}
    prices = [p for s in sample.steps for p in s.prices]
    per_token = len(prices) / seconds / sum(len(c.tokens) for c in chains.values())
    assert per_token == pytest.approx(sample.sim.config.tick_rate, rel=0.05)
    assert all(p.gas_price < 1.0 for p in prices if p.chain != "ethereum")
    assert np.median([p.gas_price for p in prices if p.chain == "ethereum"]) > 5.0


# --- routes, amounts and outcomes ---------------------------------------------------------------


def test_routes_are_closed_consistent_and_recurring(sample: Sample) -> None:
    chains = {c.name: c for c in sample.sim.config.chains}
    routes: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
    for o in sample.opportunities:
        chain = chains[o.chain]
        assert 2 <= len(o.tokens) == len(o.dexes) <= 4
        assert len(set(o.tokens)) == len(o.tokens)
        assert set(o.tokens) <= set(chain.tokens) and set(o.dexes) <= set(chain.dexes)
        assert o.route_id == route_id(o.chain, o.tokens, o.dexes)
        assert routes.setdefault(o.route_id, (o.chain, tuple(o.tokens), tuple(o.dexes))) == (
            o.chain,
            tuple(o.tokens),
            tuple(o.dexes),
        )
        assert 1_000 <= o.input_amount <= 200_000
        assert 100_000 * len(o.tokens) <= o.gas_estimate <= 260_000 * len(o.tokens)
        assert o.profit_usd < o.expected_output - o.input_amount
    assert len({o.opportunity_id for o in sample.opportunities}) == len(sample.opportunities)
    assert Counter(o.route_id for o in sample.opportunities).most_common(1)[0][1] > 100
    assert Counter(len(o.tokens) for o in sample.opportunities).keys() == {2, 3, 4}


def test_outcomes_follow_their_opportunity_after_a_block_delay(sample: Sample) -> None:
    by_id = {o.opportunity_id: o for o in sample.opportunities}
    block = {c.name: c.block_time for c in sample.sim.config.chains}
    assert len({o.opportunity_id for o in sample.outcomes}) == len(sample.outcomes)
    assert len(sample.outcomes) > 0.95 * len(sample.opportunities)
    for out in sample.outcomes:
        opp = by_id[out.opportunity_id]
        low, high = delay_range(block[out.chain])
        assert low <= out.executed_at - opp.timestamp <= high
        assert (out.route_id, out.chain) == (opp.route_id, opp.chain)
        assert 0 < out.gas_used <= opp.gas_estimate
        if out.success:
            assert out.realized_profit_usd == pytest.approx(
                opp.profit_usd, abs=0.005 * opp.input_amount + out.gas_cost_usd
            )
        else:
            assert out.realized_profit_usd == -out.gas_cost_usd < 0


def test_outcome_fraction_thins_outcomes() -> None:
    sim = MarketSimulator(2, config=SimConfig(outcome_fraction=0.25))
    steps = list(sim.run(duration=30.0))
    n_opp = sum(len(s.opportunities) for s in steps)
    n_out = sum(len(s.outcomes) for s in steps)
    assert 0.15 * n_opp < n_out < 0.3 * n_opp


# --- the ground truth as a function -------------------------------------------------------------


def _inputs(n: int = 1, **overrides: object) -> TruthInputs:
    base = dict(
        profit_ratio=0.001,
        gas_share=0.2,
        hops=3,
        volatility=2.0,
        liquidity_ratio=1_000.0,
        confidence=0.5,
        gas_level=1.0,
        stressed=False,
        shifted=False,
    )
    base.update(overrides)
    return TruthInputs(**{k: np.full(n, v) for k, v in base.items()})


@pytest.mark.parametrize(
    ("name", "low", "high", "direction"),
    [
        ("profit_ratio", -0.001, 0.002, +1),
        ("gas_share", 0.0, 0.9, -1),
        ("hops", 2, 4, -1),
        ("volatility", 1.0, 6.0, -1),
        ("liquidity_ratio", 100.0, 10_000.0, +1),
        ("confidence", 0.2, 0.9, +1),
        ("gas_level", 0.8, 3.0, -1),
        ("stressed", False, True, -1),
    ],
)
@pytest.mark.parametrize("is_shifted", [False, True])
def test_truth_moves_in_the_documented_direction(
    name: str, low: float, high: float, direction: int, is_shifted: bool
) -> None:
    p_low = success_probability(_inputs(**{name: low, "shifted": is_shifted}))[0]
    p_high = success_probability(_inputs(**{name: high, "shifted": is_shifted}))[0]
    assert direction * (p_high - p_low) > 0.03


def test_truth_is_bounded_vectorised_and_changes_with_the_shift() -> None:
    x = _inputs(
        5,
        profit_ratio=np.array([-0.05, -0.001, 0.0, 0.003, 0.05]),
        confidence=np.array([0.0, 0.3, 0.5, 0.8, 1.0]),
    )
    p = success_probability(x)
    assert p.shape == (5,) and np.all(np.diff(p) > 0)
    assert p.min() >= P_MIN and p.max() <= P_MAX
    after = success_probability(dataclasses.replace(x, shifted=np.ones(5, dtype=bool)))
    assert np.abs(after - p).max() > 0.1


def test_truth_spreads_probabilities(sample: Sample) -> None:
    low, high = np.quantile(sample.p, [0.1, 0.9])
    assert low < 0.15 and high > 0.8
    assert 0.3 < sample.p.mean() < 0.6


# --- the ground truth in the outcomes -----------------------------------------------------------


def test_outcomes_are_calibrated_to_the_ground_truth(sample: Sample) -> None:
    p, y = sample.p[sample.settled], sample.success[sample.settled]
    assert abs(y.mean() - p.mean()) < 4 * math.sqrt((p * (1 - p)).sum()) / len(p)
    bins = np.digitize(p, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    for b in np.unique(bins):
        pb, yb = p[bins == b], y[bins == b]
        assert abs(yb.mean() - pb.mean()) < 4 * math.sqrt((pb * (1 - pb)).sum()) / len(pb) + 1e-3


@pytest.mark.parametrize(
    ("feature", "better_when_high"),
    [("confidence", True), ("profit_ratio", True), ("volatility", False), ("hops", False)],
)
def test_observed_success_follows_the_features(
    sample: Sample, feature: str, better_when_high: bool
) -> None:
    x = np.asarray(getattr(sample.truth, feature), dtype=float)[sample.settled]
    y = sample.success[sample.settled]
    low, high = np.quantile(x, [0.25, 0.75])
    if feature == "hops":
        low, high = 2, 4
    gap, se = _gap(y[x >= high], y[x <= low])
    assert (gap if better_when_high else -gap) > max(0.05, 5 * se)


def _realized_variance(prices: list[PriceTick], start: float) -> tuple[float, float]:
    """Mean squared log return per second between a pool's consecutive quotes, before/after."""
    last: dict[tuple[str, str, str], PriceTick] = {}
    before, after = [], []
    for tick in prices:
        key = (tick.chain, tick.token, tick.dex)
        if key in last and tick.timestamp > last[key].timestamp:
            prev = last[key]
            r2 = math.log(tick.price / prev.price) ** 2 / (tick.timestamp - prev.timestamp)
            (after if prev.timestamp > start else before).append(r2)
        last[key] = tick
    return float(np.mean(before)), float(np.mean(after))


def test_regime_shift_raises_volatility_and_changes_the_relationships(shifted: Sample) -> None:
    after = shifted.times > 120.0
    assert np.array_equal(shifted.truth.shifted, after)
    vol = shifted.truth.volatility
    assert np.median(vol[after]) > 1.5 * np.median(vol[~after])
    shift_time = shifted.sim.now - 120.0
    before_var, after_var = _realized_variance(
        [p for s in shifted.steps for p in s.prices], shift_time
    )
    assert after_var > 1.5 * before_var  # visible in the price ticks, not only in hidden state

    def confidence_gap(window: np.ndarray) -> tuple[float, float]:
        keep = window & shifted.settled
        c, y = shifted.truth.confidence[keep], shifted.success[keep]
        return _gap(y[c > 0.7], y[c < 0.3])

    (before, se_before), (later, se_after) = confidence_gap(~after), confidence_gap(after)
    assert before - later > 5 * math.hypot(se_before, se_after)
    settled = shifted.success[shifted.settled]
    gap, se = _gap(settled[~after[shifted.settled]], settled[after[shifted.settled]])
    assert gap > max(0.08, 5 * se)
