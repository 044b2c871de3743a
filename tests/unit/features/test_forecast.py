"""Forecast maths against hand computations, and MarketState keeping forecasts: a GARCH step per
sample boundary as computed by hand, a denoised price on quotes whose mid is known, batches equal
to ticks one by one, rows exported before forecasts loading, no stale forecast republished, a
change of sample_s, parameters refused when loaded, forecasts left out once their time has
passed, and the shipped parameters."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np
import pytest

from apex_stream.errors import ModelError
from apex_stream.events import Opportunity, PriceTick
from apex_stream.features.forecast import (
    HORIZONS_S,
    ForecastParams,
    garch_update,
    load_params,
    price_forecast,
    save_params,
    variance_sum,
)
from apex_stream.features.market import (
    EMA,
    FORECAST,
    FORECASTS,
    GASS,
    GLR,
    GVAR,
    SAMPLE,
    SAMPLE_S,
    VOLF,
    WIDTH,
    MarketState,
    TokenRecord,
)
from apex_stream.features.opportunity import route_rows
from apex_stream.features.route_forecast import route_forecasts
from tests.support.events import opportunity

MODELS = Path(__file__).resolve().parents[3] / "models"
T0 = 1_700_000_000.0  # a multiple of 5 s: sample boundaries fall on whole multiples of T0 + 5

PARAMS = ForecastParams(
    version="test",
    horizons_s=list(HORIZONS_S),
    momentum_coef=[[0.0, 1.0, 0.0, 0.0, 0.0]] * len(HORIZONS_S),  # the 15 s EMA
    volatility=True,
    sample_s=5.0,
    alpha=0.2,
    beta=0.7,
    long_run_samples=10.0,
    volatility_steps=12,
)


def tick(price: float, t: float, dex: str = "uniswap", token: str = "WETH") -> PriceTick:
    return PriceTick(
        chain="eth",
        token=token,
        dex=dex,
        price=price,
        volume=1.0,
        liquidity=1e6,
        gas_price=20.0,
        timestamp=T0 + t,
    )


def one(x: float) -> np.ndarray:
    return np.array([x])


# the maths ------------------------------------------------------------------------------------


def test_a_garch_step_is_the_textbook_recursion_with_a_targeted_long_run() -> None:
    var, long_run = garch_update(one(4e-6), one(2e-6), one(9e-6), one(1.0), PARAMS)
    decay = math.exp(-1 / 10.0)
    lr = decay * 2e-6 + (1 - decay) * 9e-6
    assert long_run[0] == pytest.approx(lr, rel=1e-12)
    assert var[0] == pytest.approx(0.1 * lr + 0.2 * 9e-6 + 0.7 * 4e-6, rel=1e-12)


def test_a_return_over_k_samples_is_k_steps_of_its_share() -> None:
    # with the long run already at the per-sample share, k steps one by one are exact
    per = 3e-6
    var, lr = one(8e-6), one(per)
    for _ in range(3):
        var, lr = garch_update(var, lr, one(per), one(1.0), PARAMS)
    at_once, lr_at_once = garch_update(one(8e-6), one(per), one(3 * per), one(3.0), PARAMS)
    assert at_once[0] == pytest.approx(var[0], rel=1e-12)
    assert lr_at_once[0] == pytest.approx(lr[0], rel=1e-12)


def test_k_steps_at_once_equal_k_steps_one_by_one_with_the_long_run_moving() -> None:
    # the long run starts far from the per-sample share and moves towards it every step
    per = 3e-6
    var, lr = one(8e-6), one(2e-6)
    for _ in range(3):
        var, lr = garch_update(var, lr, one(per), one(1.0), PARAMS)
    at_once, lr_at_once = garch_update(one(8e-6), one(2e-6), one(3 * per), one(3.0), PARAMS)
    assert at_once[0] == pytest.approx(var[0], rel=1e-12)
    assert lr_at_once[0] == pytest.approx(lr[0], rel=1e-12)


def test_the_first_return_starts_both_variances_at_its_square() -> None:
    var, lr = garch_update(one(np.nan), one(np.nan), one(4e-6), one(2.0), PARAMS)
    assert lr[0] == pytest.approx(2e-6) and var[0] == pytest.approx(2e-6)


def test_the_variance_sum_decays_the_excess_by_alpha_plus_beta_per_step() -> None:
    var, lr = 5e-6, 2e-6
    by_hand = sum(lr + 0.9 ** (j - 1) * (var - lr) for j in range(1, 13))
    assert variance_sum(one(var), one(lr), PARAMS)[0] == pytest.approx(by_hand, rel=1e-12)


def test_the_price_forecast_pulls_the_last_price_towards_its_emas() -> None:
    out = price_forecast(np.array([0.1]), np.array([[0.0, 0.2]]), np.array([[0.5, 0.25]]))
    assert out[0, 0] == pytest.approx(0.1 - (0.5 * 0.1 + 0.25 * -0.1))


# MarketState keeping forecasts -----------------------------------------------------------------


def test_the_state_takes_a_garch_step_at_each_sample_boundary() -> None:
    market = MarketState(forecast=PARAMS)
    # boundaries at 5, 10, 30: the quote before each is the price sampled there
    market.update([tick(100.0, 1.0), tick(101.0, 4.0), tick(103.0, 7.0), tick(99.0, 12.0)])
    row = market.state[market.rows["eth:WETH"]]
    r1 = math.log(101.0 / 100.0)  # 1 -> 5 s (the first quote stands for the first sample)
    r2 = math.log(103.0 / 101.0)  # 5 -> 10 s
    var, lr = garch_update(one(np.nan), one(np.nan), one(r1**2), one(1.0), PARAMS)
    var, lr = garch_update(var, lr, one(r2**2), one(1.0), PARAMS)
    assert row[GVAR] == pytest.approx(var[0]) and row[GLR] == pytest.approx(lr[0])
    expected = math.sqrt(variance_sum(var, lr, PARAMS)[0] / 60.0) * 1e4
    assert row[VOLF] == pytest.approx(expected)

    market.update([tick(100.0, 31.0)])  # 10 -> 30 s: one return over four samples
    r3 = math.log(99.0 / 103.0)
    var, lr = garch_update(var, lr, one(r3**2), one(4.0), PARAMS)
    row = market.state[market.rows["eth:WETH"]]
    assert row[GVAR] == pytest.approx(var[0]) and row[GLR] == pytest.approx(lr[0])


def test_the_price_forecast_sees_through_pools_quoting_either_side_of_the_mid() -> None:
    # the mid stays at 100; two pools quote 1 % above and below it in turn
    market = MarketState(forecast=PARAMS)
    ticks = [
        tick(101.0 if i % 2 else 99.0, 0.25 * i, dex="a" if i % 2 else "b") for i in range(400)
    ]
    market.update(ticks)
    prices, vol = market.forecasts(np.array([market.rows["eth:WETH"], -1]))
    last = ticks[-1].price
    assert abs(last - 100.0) == pytest.approx(1.0)
    assert np.abs(prices[0] - 100.0).max() < 0.02  # the 15 s EMA of the alternating quotes
    assert np.isnan(prices[1]).all() and np.isnan(vol[1]) and vol[0] > 0


def test_only_kept_forecasts_are_made() -> None:
    params = msgspec.structs.replace(
        PARAMS, horizons_s=[5.0, 30.0], momentum_coef=PARAMS.momentum_coef[:2], volatility=False
    )
    market = MarketState(forecast=params)
    market.update([tick(100.0, 1.0), tick(101.0, 6.0), tick(102.0, 11.0)])
    prices, vol = market.forecasts(np.array([0]))
    assert np.isfinite(prices[0]).tolist() == [True, False, False, True]
    assert np.isnan(vol[0])


def test_without_parameters_the_state_makes_no_forecasts() -> None:
    market = MarketState()
    market.update([tick(100.0, 1.0), tick(101.0, 6.0), tick(102.0, 11.0)])
    prices, vol = market.forecasts(np.array([0]))
    assert np.isnan(prices).all() and np.isnan(vol).all()


def test_forecasts_of_a_batch_equal_those_of_its_ticks_one_by_one() -> None:
    rng = np.random.default_rng(3)
    ticks = [
        tick(100.0 * math.exp(rng.normal(0, 0.002)), t, dex=f"d{i % 3}", token=f"T{i % 4}")
        for i, t in enumerate(np.sort(rng.uniform(0, 120, 400)))
    ]
    whole, one_by_one = MarketState(forecast=PARAMS), MarketState(forecast=PARAMS)
    whole.update(ticks)
    for t in ticks:
        one_by_one.update([t])
    for key, row in whole.rows.items():
        np.testing.assert_allclose(
            whole.state[row], one_by_one.state[one_by_one.rows[key]], rtol=1e-12
        )


def test_a_row_exported_before_forecasts_loads_and_its_forecasts_restart() -> None:
    source = MarketState(forecast=PARAMS)
    source.update([tick(100.0, 1.0), tick(101.0, 6.0)])
    old_row = source.state[0, : GASS + 1].tobytes()  # the row as it was before forecasts
    blob = msgspec.msgpack.encode(TokenRecord(old_row, [("uniswap", math.log(101.0), T0 + 6)]))
    copy = MarketState(forecast=PARAMS)
    copy.load({"eth:WETH": blob})
    assert copy.state.shape[1] == WIDTH and np.isnan(copy.state[0, GASS + 1 :]).all()
    np.testing.assert_array_equal(copy.state[0, EMA], source.state[0, EMA])
    copy.update([tick(102.0, 11.0), tick(103.0, 16.0)])
    assert np.isfinite(copy.state[0, FORECAST]).all() and np.isfinite(copy.state[0, VOLF])


def test_without_parameters_a_loaded_row_republishes_no_forecasts() -> None:
    # a former owner published forecasts at 3000; an owner without parameters takes over
    source = MarketState(forecast=PARAMS)
    source.update([tick(3000.0, 1.0), tick(3000.0, 6.0), tick(3000.0, 11.0)])
    assert np.isfinite(source.state[0, FORECAST]).all()
    owner = MarketState()
    owner.load(source.export(["eth:WETH"]))
    owner.update([tick(2500.0, 12.0)])
    assert np.isnan(owner.state[0, FORECASTS]).all()
    prices, vol = owner.forecasts(np.array([0]))
    assert np.isnan(prices).all() and np.isnan(vol).all()
    assert MarketState().forecasts(np.array([-1]))[0].shape == (1, len(HORIZONS_S))


def test_a_fit_with_another_sample_s_restarts_the_garch_instead_of_freezing() -> None:
    old = MarketState(forecast=PARAMS)
    old.update([tick(100.0 + i % 3, 2.0 * i) for i in range(30)])  # 5 s samples, to t = 58
    ten = msgspec.structs.replace(PARAMS, sample_s=10.0)
    later = [tick(100.0 + i % 4, 60.0 + 3.0 * i) for i in range(20)]
    moved, fresh = MarketState(forecast=ten), MarketState(forecast=ten)
    moved.load(old.export(["eth:WETH"]))
    moved.update(later)
    fresh.update(later)
    # the loaded row's GARCH starts again at the first tick, exactly as a new token's (its
    # price forecasts differ: they read the token's EMAs, which carry on)
    garch = np.r_[SAMPLE : GLR + 1, VOLF, SAMPLE_S]
    np.testing.assert_allclose(moved.state[0, garch], fresh.state[0, garch], rtol=1e-12)
    assert moved.state[0, SAMPLE] == math.floor((T0 + 117.0) / 10.0)
    assert np.isfinite(moved.state[0, VOLF])


def test_late_ticks_leave_the_garch_where_it_is() -> None:
    market = MarketState(forecast=PARAMS)
    market.update([tick(100.0, 1.0), tick(101.0, 6.0), tick(102.0, 11.0)])
    before = market.state[0, SAMPLE : GLR + 1].copy()
    market.update([tick(99.0, 2.0)])  # a tick from two samples ago arrives late
    np.testing.assert_array_equal(market.state[0, SAMPLE : GLR + 1], before)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"horizons_s": [30.0, 5.0]}, "sorted"),
        ({"horizons_s": [5.0, 7.0]}, "among"),
        ({"momentum_coef": [[0.0] * 5]}, "one row per horizon"),
        ({"momentum_coef": [[0.0] * 4] * 4}, "5 coefficients"),
        ({"alpha": 0.4, "beta": 0.6}, "alpha + beta < 1"),
        ({"alpha": -0.1}, ">= 0"),
        ({"sample_s": 0.0}, "sample_s"),
    ],
)
def test_a_bad_parameters_file_is_refused_when_loaded(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    raw = msgspec.to_builtins(PARAMS) | change
    (tmp_path / "forecast.json").write_bytes(msgspec.json.encode(raw))
    with pytest.raises(ModelError, match="forecast.fit") as error:
        load_params(tmp_path)
    assert message in str(error.value)


def test_forecasts_whose_time_has_passed_are_left_out() -> None:
    market = MarketState(forecast=PARAMS)
    market.update([tick(100.0 + i % 2, 2.0 * i) for i in range(10)])  # last quote at T0 + 18
    market.update([tick(1.0 + 0.01 * (i % 2), 2.0 * i, token="USDC") for i in range(10)])
    ages = [3.0, 7.0, 12.0, 40.0, 70.0]
    opportunities: list[Opportunity] = [
        msgspec.structs.replace(
            opportunity(i, f"r{i}", ["WETH", "USDC", "DAI"]), chain="eth", timestamp=T0 + 18 + age
        )
        for i, age in enumerate(ages)
    ]
    prices, vols = route_forecasts(opportunities, market, route_rows(opportunities, market))
    due = [{token: list(p) for token, p in route.items()} if route else None for route in prices]
    assert due == [
        {"WETH": ["5s", "10s", "15s", "30s"], "USDC": ["5s", "10s", "15s", "30s"]},
        {"WETH": ["10s", "15s", "30s"], "USDC": ["10s", "15s", "30s"]},
        {"WETH": ["15s", "30s"], "USDC": ["15s", "30s"]},
        None,  # 40 s: every price horizon has passed
        None,
    ]
    assert [set(v) if v else None for v in vols] == [{"WETH", "USDC"}] * 4 + [None]
    assert prices[1] is not None and prices[1]["WETH"]["10s"] == prices[0]["WETH"]["10s"]


# the shipped parameters -------------------------------------------------------------------------


def test_the_shipped_parameters_load_and_round_trip(tmp_path: Path) -> None:
    params = load_params(MODELS)
    assert params is not None and params.horizons_s and set(params.horizons_s) <= set(HORIZONS_S)
    assert len(params.momentum_coef) == len(params.horizons_s)
    assert 0 < params.alpha + params.beta < 1
    save_params(tmp_path, params)
    assert load_params(tmp_path) == params
    assert load_params(tmp_path / "missing") is None
