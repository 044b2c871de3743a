"""Market state from price ticks: rounds, batch equivalence, hand-checked statistics, volatility
from each pool's own returns, and the export/load round trip workers share state through."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from apex_stream.events import PriceTick
from apex_stream.features.market import (
    GARCH_ALPHA,
    GARCH_BETA,
    TOKEN_FEATURES,
    TURNOVER,
    TURNOVER_S,
    VOLATILITY_S,
    VWAP_S,
    MarketState,
    TokenRecord,
    rounds,
)

T0 = 1_700_000_000.0
F = {name: i for i, name in enumerate(TOKEN_FEATURES)}


def tick(
    token: str,
    dex: str,
    price: float,
    t: float,
    *,
    chain: str = "eth",
    volume: float = 1.0,
    liquidity: float = 1e6,
    gas: float = 20.0,
) -> PriceTick:
    return PriceTick(
        chain=chain,
        token=token,
        dex=dex,
        price=price,
        volume=volume,
        liquidity=liquidity,
        gas_price=gas,
        timestamp=T0 + t,
    )


def random_ticks(seed: int, n: int = 80) -> list[PriceTick]:
    """Ticks of four tokens (one on a second chain) on two DEXes, distinct times per token."""
    rng = np.random.default_rng(seed)
    tokens = [("eth", "WETH"), ("eth", "USDC"), ("eth", "LINK"), ("arb", "WETH")]
    out = []
    for chain, token in tokens:
        times = np.sort(rng.choice(np.arange(1, 2000), size=n // len(tokens), replace=False)) / 10
        price = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, len(times))))
        for t, p in zip(times, price, strict=True):
            out.append(
                tick(
                    token,
                    str(rng.choice(["uniswap", "sushiswap"])),
                    float(p),
                    float(t),
                    chain=chain,
                    volume=float(rng.exponential(5.0)),
                    liquidity=float(rng.uniform(1e5, 1e7)),
                    gas=float(rng.uniform(10, 50)),
                )
            )
    return out


def row_features(market: MarketState, key: str, now: float) -> np.ndarray:
    return market.features(np.array([market.rows[key]]), np.array([T0 + now]))[0]


def assert_same_state(a: MarketState, b: MarketState, atol: float = 1e-12) -> None:
    """Same tokens and pools with equal state rows, whatever row each landed in."""
    assert a.rows.keys() == b.rows.keys()
    assert a.pool_rows.keys() == b.pool_rows.keys()
    for key in a.rows:
        np.testing.assert_allclose(a.state[a.rows[key]], b.state[b.rows[key]], rtol=0, atol=atol)
    for key in a.pool_rows:
        np.testing.assert_allclose(
            a.pool_state[a.pool_rows[key]], b.pool_state[b.pool_rows[key]], rtol=0, atol=atol
        )


# rounds ------------------------------------------------------------------------------------


def test_rounds_hand_example() -> None:
    group = np.array([1, 0, 1, 1, 0])
    key = np.array([3.0, 2.0, 1.0, 2.0, 1.0])
    result = rounds(group, key)
    assert [r.tolist() for r in result] == [[4, 2], [1, 3], [0]]


def test_rounds_of_nothing() -> None:
    assert rounds(np.array([], dtype=np.int64), np.array([])) == []


@pytest.mark.parametrize("seed", range(5))
def test_rounds_unique_groups_key_order_and_full_cover(seed: int) -> None:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 6, 60)
    key = rng.permutation(60).astype(float)  # distinct keys
    result = rounds(group, key)

    # every index exactly once
    assert sorted(np.concatenate(result).tolist()) == list(range(60))
    # at most one index per group in a round
    for r in result:
        assert len(set(group[r].tolist())) == len(r)
    # as many rounds as the busiest group has members
    assert len(result) == np.bincount(group).max()
    # a group's k-th round holds its k-th smallest key
    for g in np.unique(group):
        seen = [key[i] for r in result for i in r if group[i] == g]
        assert seen == sorted(key[group == g].tolist())


# batch vs one at a time ----------------------------------------------------------------------


@pytest.mark.parametrize("order", ["time", "reversed", "shuffled"])
def test_batch_equals_one_tick_at_a_time(order: str) -> None:
    ticks = random_ticks(1)
    in_time = sorted(ticks, key=lambda t: t.timestamp)

    one_by_one = MarketState()
    for t in in_time:
        one_by_one.update([t])

    batch = {
        "time": in_time,
        "reversed": in_time[::-1],
        "shuffled": [ticks[i] for i in np.random.default_rng(2).permutation(len(ticks))],
    }[order]
    at_once = MarketState()
    updated = at_once.update(batch)

    assert updated == {"eth:WETH", "eth:USDC", "eth:LINK", "arb:WETH"}
    assert at_once.ticks == one_by_one.ticks == len(ticks)
    assert_same_state(at_once, one_by_one)


def test_batches_split_anywhere_give_the_same_state() -> None:
    ticks = sorted(random_ticks(3), key=lambda t: t.timestamp)
    whole = MarketState()
    whole.update(ticks)
    parts = MarketState()
    for chunk in np.array_split(np.arange(len(ticks)), 7):
        parts.update([ticks[i] for i in chunk])
    assert_same_state(whole, parts)


def test_empty_batch_changes_nothing() -> None:
    market = MarketState()
    assert market.update([]) == set()
    assert market.ticks == 0 and market.rows == {}


def test_state_grows_past_its_capacity() -> None:
    market = MarketState(capacity=2)
    market.update([tick(f"T{i}", "uniswap", 1.0 + i, float(i)) for i in range(5)])
    assert len(market.rows) == 5
    logp = [market.state[market.rows[f"eth:T{i}"], 1] for i in range(5)]
    np.testing.assert_allclose(logp, np.log(1.0 + np.arange(5)), rtol=0, atol=1e-15)


# hand-checked statistics -------------------------------------------------------------------


def test_price_step_hand_checked() -> None:
    market = MarketState()
    market.update([tick("WETH", "uniswap", 100.0, 0.0), tick("WETH", "uniswap", 110.0, 1.0)])
    f = row_features(market, "eth:WETH", now=1.0)

    l100, l110 = math.log(100.0), math.log(110.0)
    for h in (5, 15, 30, 60, 300):
        ema = l100 + (1 - math.exp(-1 / h)) * (l110 - l100)
        assert f[F[f"momentum_{h}s"]] == pytest.approx(l110 - ema, rel=1e-12, abs=1e-15)
    # momentum = log(1.1) * exp(-1/5) = 0.0953102 * 0.8187308
    assert f[F["momentum_5s"]] == pytest.approx(0.0780334, rel=1e-6)

    # one pool moved by log(1.1) in one second: z^2 = log(1.1)^2 / 1 s
    z2 = (l110 - l100) ** 2
    k = math.exp(-1 / VOLATILITY_S)
    var = (1 - k) * z2  # the first tick seeds the variance with 0
    assert f[F["volatility_ewma_bps"]] == pytest.approx(math.sqrt(var) * 1e4, rel=1e-12)
    garch = (1 - GARCH_ALPHA - GARCH_BETA) * var + GARCH_ALPHA * z2
    assert f[F["volatility_garch_bps"]] == pytest.approx(math.sqrt(garch) * 1e4, rel=1e-12)

    # volume 1 per tick: 1-minute VWAP of 100 (decayed one second) and 110
    kv = math.exp(-1 / VWAP_S)
    vwap = (100.0 * kv + 110.0) / (kv + 1.0)
    assert f[F["vwap_deviation"]] == pytest.approx(l110 - math.log(vwap), rel=1e-12)
    rate = {tau: (math.exp(-1 / tau) + 1) / tau for tau in (5.0, 60.0, 300.0)}
    assert f[F["log_volume_ma"]] == pytest.approx(math.log1p(rate[60.0]), rel=1e-12)
    # 5 s rate over 5 min rate, each with the 1e-9 guard against an empty rate
    ratio = (rate[5.0] + 1e-9) / (rate[300.0] + 1e-9)
    assert f[F["volume_ratio"]] == pytest.approx(ratio, rel=1e-12)

    # liquidity and gas never changed
    assert f[F["log_liquidity"]] == pytest.approx(math.log1p(1e6), rel=1e-12)
    assert f[F["liquidity_ratio"]] == pytest.approx(1.0, rel=1e-12)
    assert f[F["gas_trend"]] == pytest.approx(0.0, abs=1e-12)
    assert f[F["gas_level"]] == pytest.approx(0.0, abs=1e-12)
    assert f[F["age_s"]] == 0.0


def test_age_counts_from_the_last_tick_and_is_never_negative() -> None:
    market = MarketState()
    market.update([tick("WETH", "uniswap", 100.0, 10.0)])
    assert row_features(market, "eth:WETH", now=17.5)[F["age_s"]] == pytest.approx(7.5)
    assert row_features(market, "eth:WETH", now=5.0)[F["age_s"]] == 0.0


def test_gas_step_moves_the_gas_features() -> None:
    market = MarketState()
    market.update([tick("WETH", "uniswap", 100.0, 0.0, gas=20.0)])
    market.update([tick("WETH", "uniswap", 100.0, 3.0, gas=40.0)])
    f = row_features(market, "eth:WETH", now=3.0)
    fast = 20.0 + (1 - math.exp(-3 / 15)) * 20.0
    slow = 20.0 + (1 - math.exp(-3 / 300)) * 20.0
    assert f[F["gas_trend"]] == pytest.approx(math.log(fast / slow), rel=1e-9)
    assert f[F["gas_level"]] == pytest.approx(math.log(40.0 / slow), rel=1e-9)


def test_turnover_is_the_decayed_mean_of_log_volume_over_depth() -> None:
    market = MarketState()
    market.update([tick("WETH", "uniswap", 100.0, 0.0, volume=1e3, liquidity=1e6)])
    first = math.log(1e3 / 1e6)
    assert row_features(market, "eth:WETH", now=0.0)[F["log_turnover"]] == pytest.approx(first)
    # a stressed market: three times the trading on 70 % of the depth, two seconds later
    market.update([tick("WETH", "uniswap", 100.0, 2.0, volume=3e3, liquidity=7e5)])
    k = math.exp(-2 / TURNOVER_S)
    mean = k * first + (1 - k) * math.log(3e3 / 7e5)
    f = row_features(market, "eth:WETH", now=2.0)
    assert f[F["log_turnover"]] == pytest.approx(mean, rel=1e-12)
    # a quote without trades says nothing about turnover
    market.update([tick("WETH", "uniswap", 100.0, 4.0, volume=0.0)])
    assert row_features(market, "eth:WETH", now=4.0)[F["log_turnover"]] == pytest.approx(mean)


def test_turnover_waits_for_the_first_trade() -> None:
    market = MarketState()
    market.update([tick("WETH", "uniswap", 100.0, 0.0, volume=0.0)])
    assert np.isnan(row_features(market, "eth:WETH", now=0.0)[F["log_turnover"]])
    market.update([tick("WETH", "uniswap", 100.0, 1.0, volume=5.0, liquidity=1e4)])
    f = row_features(market, "eth:WETH", now=1.0)
    assert f[F["log_turnover"]] == pytest.approx(math.log(5.0 / 1e4), rel=1e-12)


def test_volatility_uses_each_pools_own_returns() -> None:
    """Two DEXes quoting constant but different prices: the token's price never moves."""
    ticks = [
        tick("WETH", "uniswap" if i % 2 else "sushiswap", 100.0 if i % 2 else 101.0, 0.5 * i)
        for i in range(20)
    ]
    market = MarketState()
    market.update(ticks)
    f = row_features(market, "eth:WETH", now=10.0)
    assert f[F["volatility_ewma_bps"]] == 0.0
    assert f[F["volatility_garch_bps"]] == 0.0

    moving = MarketState()
    moving.update([tick("WETH", "uniswap", 100.0 * 1.001**i, 0.5 * i) for i in range(20)])
    assert row_features(moving, "eth:WETH", now=10.0)[F["volatility_ewma_bps"]] > 0.0


def test_unknown_rows_give_nan() -> None:
    market = MarketState()
    market.update([tick("WETH", "uniswap", 100.0, 0.0)])
    row = market.rows["eth:WETH"]
    out = market.features(np.array([[-1, row], [row, -1]]), np.array([[T0], [T0]]))
    assert out.shape == (2, 2, len(TOKEN_FEATURES))
    assert np.isnan(out[0, 0]).all() and np.isnan(out[1, 1]).all()
    assert np.isfinite(out[0, 1]).all() and np.isfinite(out[1, 0]).all()
    np.testing.assert_array_equal(out[0, 1], out[1, 0])


# export / load -------------------------------------------------------------------------------


def test_export_load_round_trip_reproduces_features_and_continues_identically() -> None:
    ticks = sorted(random_ticks(4), key=lambda t: t.timestamp)
    source = MarketState()
    source.update(ticks)

    copy = MarketState()
    copy.load(source.export(source.rows))
    assert copy.rows.keys() == source.rows.keys()
    for key in source.rows:
        np.testing.assert_array_equal(
            row_features(copy, key, now=250.0), row_features(source, key, now=250.0)
        )

    # the pools' last quotes travel too: later ticks on both give the same state
    later = [tick("WETH", dex, 120.0 + i, 300.0 + i) for i, dex in enumerate(["uniswap"] * 3)]
    later += [tick("USDC", "sushiswap", 1.01, 301.5)]
    source.update(later)
    copy.update(later)
    assert_same_state(copy, source, atol=0.0)


def test_export_of_some_tokens_loads_only_those() -> None:
    source = MarketState()
    source.update(random_ticks(5))
    copy = MarketState()
    copy.load(source.export(["eth:USDC"]))
    assert list(copy.rows) == ["eth:USDC"]
    assert all(k.startswith("eth:USDC:") for k in copy.pool_rows)
    np.testing.assert_array_equal(
        row_features(copy, "eth:USDC", now=300.0), row_features(source, "eth:USDC", now=300.0)
    )


def test_load_replaces_what_the_state_held_for_that_token() -> None:
    source = MarketState()
    source.update([tick("WETH", "uniswap", 200.0, 5.0)])
    target = MarketState()
    target.update([tick("WETH", "uniswap", 100.0, 0.0), tick("USDC", "uniswap", 1.0, 0.0)])
    target.load(source.export(["eth:WETH"]))
    np.testing.assert_array_equal(
        row_features(target, "eth:WETH", now=5.0), row_features(source, "eth:WETH", now=5.0)
    )
    assert target.state[target.rows["eth:USDC"], 1] == 0.0  # log(1.0), untouched


def test_a_row_exported_before_turnover_loads_and_its_turnover_restarts() -> None:
    source = MarketState()
    source.update([tick("WETH", "uniswap", 100.0, 0.0, volume=1e3)])
    blob = source.export(["eth:WETH"])["eth:WETH"]
    record = msgspec.msgpack.decode(blob, type=TokenRecord)
    old = TokenRecord(record.row[: TURNOVER * 8], record.pools)  # the row before turnover
    copy = MarketState()
    copy.load({"eth:WETH": msgspec.msgpack.encode(old)})
    assert np.isnan(copy.state[0, TURNOVER])
    np.testing.assert_array_equal(copy.state[0, :TURNOVER], source.state[0, :TURNOVER])
    copy.update([tick("WETH", "uniswap", 100.0, 1.0, volume=50.0, liquidity=1e5)])
    f = row_features(copy, "eth:WETH", now=1.0)
    assert f[F["log_turnover"]] == pytest.approx(math.log(50.0 / 1e5), rel=1e-12)


def test_load_more_tokens_than_the_default_capacity() -> None:
    source = MarketState()
    source.update([tick(f"T{i}", "uniswap", 1.0 + i, 0.0) for i in range(65)])
    copy = MarketState()  # capacity 64, like features.agent.MarketView
    copy.load(source.export(source.rows))
    for key in source.rows:
        np.testing.assert_array_equal(
            row_features(copy, key, now=1.0), row_features(source, key, now=1.0)
        )


def test_load_more_pools_than_the_default_capacity() -> None:
    dexes = [f"dex{j}" for j in range(5)]
    source = MarketState()
    source.update(
        [tick(f"T{i}", d, 1.0 + i, float(j)) for i in range(60) for j, d in enumerate(dexes)]
    )
    assert len(source.rows) == 60 and len(source.pool_rows) == 300
    copy = MarketState()
    copy.load(source.export(source.rows))
    assert_same_state(copy, source, atol=0.0)
