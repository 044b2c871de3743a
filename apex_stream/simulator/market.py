"""The market's hidden state and the stochastic processes that move it, all vectorised.

State is kept in flat arrays: one entry per token (mid price, volatility regime), per pool
(a token listed on a dex of a chain: price dislocation, depth) and per chain (gas price).
``step`` moves every process by ``h`` seconds with exact discretisations (geometric walk,
Ornstein-Uhlenbeck), so results barely depend on the step size.
"""

from __future__ import annotations

import numpy as np

from .config import SimConfig

#: Regimes are 0 calm, 1 normal, 2 stressed; tokens start in them with these probabilities.
STRESSED, INITIAL_REGIME_P = 2, (0.35, 0.5, 0.15)
#: Multipliers of volatility, traded volume and dislocation size per regime (calm, normal,
#: stressed).
VOL_MULT = np.array([0.6, 1.0, 2.5])
VOLUME_MULT = np.array([0.6, 1.0, 3.0])
DISLOCATION_MULT = np.array([0.7, 1.0, 1.8])
#: Mean seconds in each regime, and where a token goes when it leaves one (rows: from; stored
#: as cumulative probabilities).
DWELL = np.array([240.0, 300.0, 60.0])
LEAVE_TO = np.array([[0.0, 0.9, 0.1], [0.6, 0.0, 0.4], [0.2, 0.8, 0.0]]).cumsum(axis=1)
#: After the forced shift: stress lasts longer and is entered more often, and everything moves more.
DWELL_SHIFTED = np.array([240.0, 240.0, 90.0])
LEAVE_TO_SHIFTED = np.array([[0.0, 0.8, 0.2], [0.5, 0.0, 0.5], [0.1, 0.9, 0.0]]).cumsum(axis=1)
SHIFT_VOL_MULT = 1.5
#: Share of non-stable tokens thrown into the stressed regime at the moment of the shift.
SHIFT_SHOCK = 0.5
#: Correlation of a non-stable token's returns with the market factor.
MARKET_CORRELATION = 0.5
#: Dislocations revert with this time constant (s); size: base + a third of the fee, in bps.
DISLOCATION_TAU, DISLOCATION_BPS, STABLE_DISLOCATION = 5.0, 6.0, 0.35
#: Pool depth: log deviation size and time constant (s), and the share that stays in stress.
DEPTH_SIGMA, DEPTH_TAU, STRESSED_DEPTH = 0.15, 600.0, 0.7
#: Gas: log deviation size, time constant (s), mean seconds between spikes, spike size range.
GAS_SIGMA, GAS_TAU, GAS_SPIKE_EVERY, GAS_SPIKE = 0.25, 60.0, 180.0, (1.5, 4.0)


def _ou(
    x: np.ndarray, h: float, tau: float, sigma: np.ndarray | float, z: np.ndarray
) -> np.ndarray:
    """Exact OU update towards 0 with stationary standard deviation ``sigma``."""
    a = np.exp(-h / tau)
    updated: np.ndarray = x * a + sigma * np.sqrt(1.0 - a * a) * z
    return updated


class Market:
    """Every price process of every chain; ``step`` advances them all at once."""

    def __init__(self, config: SimConfig, rng: np.random.Generator) -> None:
        self._rng = rng
        token_index = {t.symbol: i for i, t in enumerate(config.tokens)}
        dex_index = {d.name: i for i, d in enumerate(config.dexes)}
        pools = [
            (c, token_index[tok], dex_index[dex])
            for c, chain in enumerate(config.chains)
            for tok in chain.tokens
            for dex in chain.dexes
            if (lists := config.dexes[dex_index[dex]].lists) is None or tok in lists
        ]
        self.pool_chain, self.pool_token, self.pool_dex = np.array(pools).T
        self.pool_names = [
            (config.chains[c].name, config.tokens[t].symbol, config.dexes[d].name)
            for c, t, d in pools
        ]
        self.token_index, self.dex_index = token_index, dex_index
        self.stable = np.array([t.stable for t in config.tokens])
        self.base_vol = np.array([t.volatility for t in config.tokens])
        self.gas_typical = np.array([c.gas_gwei for c in config.chains])
        self.gas_token = np.array([token_index[c.gas_token] for c in config.chains])

        dex_fee = np.array([d.fee for d in config.dexes])[self.pool_dex]
        self.base_depth = (
            np.array([t.depth for t in config.tokens])[self.pool_token]
            * np.array([d.depth for d in config.dexes])[self.pool_dex]
            * np.array([c.depth for c in config.chains])[self.pool_chain]
            * rng.lognormal(0.0, 0.3, len(pools))
        )
        thinness = np.clip((20e6 / self.base_depth) ** 0.25, 0.5, 2.0)
        chain_factor = np.array([c.dislocation for c in config.chains])[self.pool_chain]
        stable_factor = np.where(self.stable[self.pool_token], STABLE_DISLOCATION, 1.0)
        self.dislocation_scale = (DISLOCATION_BPS + dex_fee * 1e4 / 3) * 1e-4 * thinness
        self.dislocation_scale *= stable_factor * chain_factor

        n_tokens, n_pools = len(config.tokens), len(pools)
        self.regime = rng.choice(3, size=n_tokens, p=INITIAL_REGIME_P)
        self.log_mid = np.log([t.price for t in config.tokens])
        self.dislocation = self.dislocation_scale * DISLOCATION_MULT[self.regime[self.pool_token]]
        self.dislocation *= rng.standard_normal(n_pools)
        self.log_depth = DEPTH_SIGMA * rng.standard_normal(n_pools)
        self.log_gas = GAS_SIGMA * rng.standard_normal(len(config.chains))
        self.shifted = False
        self._sqrt_rho = np.sqrt(np.where(self.stable, 0.0, MARKET_CORRELATION))
        self._sqrt_idio = np.sqrt(1.0 - self._sqrt_rho**2)
        self._observe()

    def _observe(self) -> None:
        """Refresh the views of the state that others read, once per step."""
        #: Volatility of each token's mid price now, bps per sqrt(second).
        self.volatility = self.base_vol * VOL_MULT[self.regime]
        if self.shifted:
            self.volatility *= SHIFT_VOL_MULT
        self.stressed = self.regime == STRESSED
        self.mid = np.exp(self.log_mid)
        self.pool_price = self.mid[self.pool_token] * (1.0 + self.dislocation)
        # Liquidity providers pull a share of their depth out in stress.
        stress_cut = np.where(self.stressed[self.pool_token], STRESSED_DEPTH, 1.0)
        #: USD depth of each pool.
        self.depth = self.base_depth * np.exp(self.log_depth) * stress_cut
        #: Gas price per chain, gwei.
        self.gas_price = self.gas_typical * np.exp(self.log_gas)

    def step(self, h: float, *, shifted: bool) -> None:
        """Advance every process by ``h`` seconds, in the post-shift regime if ``shifted``."""
        if shifted and not self.shifted:
            shock = (self._rng.random(len(self.regime)) < SHIFT_SHOCK) & ~self.stable
            self.regime = np.where(shock, STRESSED, self.regime)
        self.shifted = shifted
        n_tokens, n_pools, n_chains = len(self.regime), len(self.dislocation), len(self.log_gas)
        z = self._rng.standard_normal(1 + n_tokens + 2 * n_pools + n_chains)
        u = self._rng.random(2 * n_tokens + 2 * n_chains)
        z_market, z_mid = z[0], z[1 : 1 + n_tokens]
        z_disloc, z_depth, z_gas = np.split(z[1 + n_tokens :], [n_pools, 2 * n_pools])
        u_leave, u_target, u_spike, u_size = np.split(u, [n_tokens, 2 * n_tokens, -n_chains])

        dwell, leave_to = (DWELL_SHIFTED, LEAVE_TO_SHIFTED) if shifted else (DWELL, LEAVE_TO)
        leaving = u_leave < -np.expm1(-h / dwell[self.regime])
        target = (u_target[:, None] > leave_to[self.regime]).sum(axis=1)
        self.regime = np.where(leaving, np.minimum(target, STRESSED), self.regime)

        sigma = self.base_vol * 1e-4 * VOL_MULT[self.regime] * (SHIFT_VOL_MULT if shifted else 1.0)
        shock = self._sqrt_rho * z_market + self._sqrt_idio * z_mid
        self.log_mid += -0.5 * sigma * sigma * h + sigma * np.sqrt(h) * shock

        disloc_sigma = self.dislocation_scale * DISLOCATION_MULT[self.regime[self.pool_token]]
        if shifted:
            disloc_sigma *= np.sqrt(SHIFT_VOL_MULT)
        self.dislocation = _ou(self.dislocation, h, DISLOCATION_TAU, disloc_sigma, z_disloc)
        self.log_depth = _ou(self.log_depth, h, DEPTH_TAU, DEPTH_SIGMA, z_depth)

        spikes = u_spike < -np.expm1(-h / GAS_SPIKE_EVERY)
        spike_size = np.log(GAS_SPIKE[0] + (GAS_SPIKE[1] - GAS_SPIKE[0]) * u_size)
        self.log_gas = _ou(self.log_gas, h, GAS_TAU, GAS_SIGMA, z_gas) + spikes * spike_size
        self._observe()

    def tick_volumes(self, pools: np.ndarray) -> np.ndarray:
        """USD volume traded since each quote's previous one: heavy-tailed, higher in stress."""
        scale = 2e-4 * self.depth[pools] * VOLUME_MULT[self.regime[self.pool_token[pools]]]
        volumes: np.ndarray = scale * self._rng.lognormal(0.0, 1.2, len(pools))
        return volumes
