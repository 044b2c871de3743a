"""The scanner: a fixed book of candidate cycles per chain, priced against current pool quotes.

Real arbitrage bots watch a known set of routes, so the same route recurs and its history is a
useful feature. Each instant the scanner reports routes in proportion to ``exp(score / 5 bps)``
within a chain, the score being the net return at the planned size (edge after fees, minus
price impact and gas): dislocations that beat the costs are what make a route show up, and a
quiet market still yields a few marginal (often unprofitable) reports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .config import SimConfig
from .market import Market
from .truth import TruthInputs

MAX_HOPS = 4
#: Softmax temperature of route selection (log return).
SELECTION_TEMPERATURE = 5e-4
#: Gas every route pays on top of its hops (base transaction + flash-loan bookkeeping).
ROUTE_OVERHEAD_GAS = 60_000
#: Trades are sized near the optimum ``edge * depth / 2``, at least $2k, times lognormal noise.
MIN_SIZE, SIZE_NOISE, SIZE_RANGE = 2_000.0, 0.6, (1_000.0, 200_000.0)
HUB_TOKENS = ("WETH", "USDC")
#: Spread of the scanner's private information in its confidence (logit units).
SCANNER_NOISE = 1.2


@dataclass(frozen=True)
class Quotes:
    """Every route at current quotes: what the scanner ranks by."""

    #: Return of one unit around the cycle after fees, before price impact.
    edge: np.ndarray
    #: ``(MAX_HOPS, routes)`` USD depth per hop (the shallower side of the pool pair).
    hop_depth: np.ndarray
    #: Trade size that maximises gross profit (at least ``MIN_SIZE``).
    planned: np.ndarray
    #: Gas cost in USD at the route's nominal gas units.
    gas_cost: np.ndarray
    #: Net return at the planned size: edge - price impact - gas / size.
    score: np.ndarray


@dataclass(frozen=True)
class Priced:
    """Scanner output for a batch of chosen routes, aligned with ``routes``."""

    routes: np.ndarray
    input_amount: np.ndarray
    expected_output: np.ndarray
    gas_estimate: np.ndarray
    gas_cost_usd: np.ndarray
    profit_usd: np.ndarray
    confidence: np.ndarray
    truth: TruthInputs


def route_id(chain: str, tokens: list[str], dexes: list[str]) -> str:
    """Stable short id of a route: the same chain, tokens and dexes always give the same id."""
    key = f"{chain}|{'>'.join(tokens)}|{'>'.join(dexes)}".encode()
    return "r-" + hashlib.blake2b(key, digest_size=6).hexdigest()


class RouteBook:
    """Candidate routes of every chain as padded ``(MAX_HOPS, routes)`` pool-index arrays."""

    def __init__(self, config: SimConfig, market: Market, rng: np.random.Generator) -> None:
        pool_of = {
            (c, t, d): p
            for p, (c, t, d) in enumerate(
                zip(market.pool_chain, market.pool_token, market.pool_dex, strict=True)
            )
        }
        rows: list[tuple[int, list[int], list[int]]] = []
        for c, chain in enumerate(config.chains):
            tokens = [market.token_index[t] for t in chain.tokens]
            hubs = [market.token_index[t] for t in HUB_TOKENS if t in chain.tokens]
            dexes = [market.dex_index[d] for d in chain.dexes]
            seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
            hop_counts = rng.choice([2, 3, 4], size=config.routes_per_chain, p=config.hop_mix)
            for n in hop_counts:
                for _ in range(100):
                    route = self._draw(rng, int(n), tokens, hubs, dexes, c, pool_of)
                    if route is not None and route not in seen:
                        seen.add(route)
                        rows.append((c, list(route[0]), list(route[1])))
                        break
        if len({c for c, _, _ in rows}) < len(config.chains):
            raise ValueError("every chain needs at least 2 tokens on 2 dexes to form routes")
        n_routes = len(rows)
        self.chain = np.array([c for c, _, _ in rows])
        self.hops = np.array([len(t) for _, t, _ in rows])
        # Hop-major ``(MAX_HOPS, routes)`` arrays: sums over hops are then adds of 4 rows.
        self.tokens = np.zeros((MAX_HOPS, n_routes), dtype=int)
        self.pool_in = np.zeros((MAX_HOPS, n_routes), dtype=int)
        self.pool_out = np.zeros((MAX_HOPS, n_routes), dtype=int)
        self.mask = np.zeros((MAX_HOPS, n_routes), dtype=bool)
        dex_fee = np.array([d.fee for d in config.dexes])
        hop_gas = np.array([d.hop_gas for d in config.dexes])
        self.log_fee = np.zeros(n_routes)
        self.gas_units = np.full(n_routes, float(ROUTE_OVERHEAD_GAS))
        self.names: list[tuple[str, list[str], list[str], str]] = []
        for r, (c, toks, dxs) in enumerate(rows):
            n = len(toks)
            # Padding repeats the first token and a zero-width hop so maxima and edges ignore it.
            self.tokens[:, r] = toks + [toks[0]] * (MAX_HOPS - n)
            self.mask[:n, r] = True
            for i in range(n):
                self.pool_in[i, r] = pool_of[(c, toks[i], dxs[i])]
                self.pool_out[i, r] = pool_of[(c, toks[(i + 1) % n], dxs[i])]
            self.pool_in[n:, r] = self.pool_out[n:, r] = self.pool_in[0, r]
            self.log_fee[r] = np.log1p(-dex_fee[dxs]).sum()
            self.gas_units[r] += hop_gas[dxs].sum()
            chain_name = config.chains[c].name
            token_names = [config.tokens[t].symbol for t in toks]
            dex_names = [config.dexes[d].name for d in dxs]
            self.names.append(
                (chain_name, token_names, dex_names, route_id(chain_name, token_names, dex_names))
            )
        self._hop_weight = self.mask.astype(float)  # 1 per real hop, 0 per padding hop
        self.chain_start = np.searchsorted(self.chain, np.arange(len(config.chains)))
        share = np.array([c.share for c in config.chains])
        self.chain_share = share / share.sum()
        self._market = market
        self._rng = rng

    @staticmethod
    def _draw(
        rng: np.random.Generator,
        n: int,
        tokens: list[int],
        hubs: list[int],
        dexes: list[int],
        chain: int,
        pool_of: dict[tuple[int, int, int], int],
    ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """One random cycle starting from a hub token most of the time; ``None`` if unlisted."""
        start = int(rng.choice(hubs)) if hubs and rng.random() < 0.7 else int(rng.choice(tokens))
        rest = [int(t) for t in rng.permutation([t for t in tokens if t != start])[: n - 1]]
        toks = [start, *rest]
        dxs = [int(d) for d in rng.choice(dexes, size=n)]
        if n == 2 and dxs[0] == dxs[1]:
            return None
        for i, d in enumerate(dxs):
            if (chain, toks[i], d) not in pool_of or (chain, toks[(i + 1) % n], d) not in pool_of:
                return None
        return tuple(toks), tuple(dxs)

    def quote(self) -> Quotes:
        """Every route's edge, hop depths, planned size, gas cost and score at current quotes."""
        m = self._market
        log_quote = np.log1p(m.dislocation)
        log_edge = (log_quote[self.pool_in] - log_quote[self.pool_out]).sum(axis=0)
        edge = np.expm1(log_edge + self.log_fee)
        hop_depth = np.minimum(m.depth[self.pool_in], m.depth[self.pool_out])
        impact = (self._hop_weight / hop_depth).sum(axis=0)
        planned = np.hypot(np.maximum(edge, 0.0) / impact / 2.0, MIN_SIZE)
        gas_cost = self.gas_units * (m.gas_price * 1e-9 * m.mid[m.gas_token])[self.chain]
        score = edge - planned * impact - gas_cost / planned
        return Quotes(edge, hop_depth, planned, gas_cost, score)

    def choose(self, n: int, score: np.ndarray) -> np.ndarray:
        """Pick ``n`` routes: chains by share, routes within a chain by ``exp(score / T)``."""
        x = score / SELECTION_TEMPERATURE
        w = np.exp(x - np.maximum.reduceat(x, self.chain_start)[self.chain])
        w *= (self.chain_share / np.add.reduceat(w, self.chain_start))[self.chain]
        cdf = np.cumsum(w)
        picks = np.searchsorted(cdf, self._rng.random(n) * cdf[-1], side="right")
        chosen: np.ndarray = np.minimum(picks, len(w) - 1)
        return chosen

    def price(self, routes: np.ndarray, q: Quotes) -> Priced:
        """Size, quote and score the chosen routes; sizes scatter around the planned one."""
        m, rng, n = self._market, self._rng, len(routes)
        hop_depth = np.where(self.mask[:, routes], q.hop_depth[:, routes], np.inf)
        edge = q.edge[routes]
        input_amount = np.clip(q.planned[routes] * rng.lognormal(0.0, SIZE_NOISE, n), *SIZE_RANGE)
        slippage = (1.0 / (1.0 + input_amount / hop_depth)).prod(axis=0)
        expected_output = input_amount * (1.0 + edge) * slippage

        chain = self.chain[routes]
        gas_estimate = np.round(self.gas_units[routes] * rng.lognormal(0.0, 0.05, n))
        gas_cost = q.gas_cost[routes] * gas_estimate / self.gas_units[routes]
        gross = expected_output - input_amount
        profit = gross - gas_cost

        stressed = m.stressed[self.tokens[:, routes]].any(axis=0)
        # The scanner's confidence reads the edge and the market's mood, through its own noise.
        edge_bps = np.clip(edge * 1e4, -50.0, 50.0)
        logit = -0.3 + 0.04 * edge_bps - 0.7 * stressed + SCANNER_NOISE * rng.standard_normal(n)
        confidence = 1.0 / (1.0 + np.exp(-logit))
        truth = TruthInputs(
            profit_ratio=profit / input_amount,
            gas_share=gas_cost / (gas_cost + np.maximum(gross, 0.0)),
            hops=self.hops[routes],
            volatility=m.volatility[self.tokens[:, routes]].max(axis=0),
            liquidity_ratio=hop_depth.min(axis=0) / input_amount,
            confidence=confidence,
            gas_level=m.gas_price[chain] / m.gas_typical[chain],
            stressed=stressed,
            shifted=np.full(n, m.shifted),
        )
        return Priced(
            routes, input_amount, expected_output, gas_estimate, gas_cost, profit, confidence, truth
        )
