"""The simulator's clock: moves the market, turns its state into events, settles outcomes.

All randomness comes from one ``np.random.default_rng(seed)`` drawn in a fixed order, so a seed
replays the same stream. Outcomes are decided when their opportunity appears (from the hidden
ground truth) and held back until their block lands, a few block times later.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..events import Opportunity, Outcome, PriceTick
from .config import SimConfig
from .market import Market
from .routes import Priced, RouteBook
from .truth import TruthInputs, concat, success_probability

#: Inclusion delay = wait for the next block + 0, 1 or 2 extra blocks + relay jitter (s).
EXTRA_BLOCKS_P = (0.7, 0.2, 0.1)
JITTER = (0.05, 0.5)
#: Execution noise: mean and spread of the output shortfall on success, gas burnt vs estimate.
OUTPUT_NOISE = (1e-4, 3e-4)
SUCCESS_GAS, REVERT_GAS = (0.85, 1.0), (0.25, 0.7)
#: Gas price drift between quote and inclusion (lognormal sigma).
GAS_PRICE_DRIFT = 0.05

#: An outcome waiting for its block: (executed_at, opportunity_id, route_id, chain, success,
#: realized_profit_usd, gas_used, gas_cost_usd), in a heap by time.
_Pending = tuple[float, str, str, str, bool, float, float, float]


def delay_range(block_time: float) -> tuple[float, float]:
    """Bounds of the delay between an opportunity and its outcome on a chain, in seconds."""
    return JITTER[0], len(EXTRA_BLOCKS_P) * block_time + JITTER[1]


@dataclass(frozen=True)
class Step:
    """Events with timestamps in one ``advance`` window, each list in time order."""

    prices: list[PriceTick]
    opportunities: list[Opportunity]
    outcomes: list[Outcome]
    #: Hidden ground truth, aligned with ``opportunities``.
    success_probability: np.ndarray
    #: The ground truth's inputs, aligned with ``opportunities`` (for measuring models).
    truth_inputs: TruthInputs = field(repr=False)


class MarketSimulator:
    """A seeded multi-chain DEX market emitting prices, opportunities and their outcomes.

    Events carry sim time (``start_time`` + elapsed seconds). ``events.py`` rejects stamps more
    than a minute ahead of the wall clock, so pick ``start_time`` to keep sim time in the past.
    """

    def __init__(
        self, seed: int = 0, *, start_time: float = 1_767_225_600.0, config: SimConfig | None = None
    ) -> None:
        self.config = config or SimConfig()
        self._rng = np.random.default_rng(seed)
        self._market = m = Market(self.config, self._rng)
        self._routes = RouteBook(self.config, m, self._rng)
        self._start, self._elapsed = start_time, 0.0
        # ids are unique per (seed, start): live runs start at the wall clock, so repeated runs
        # with one seed never reuse an opportunity_id
        self._id_prefix = f"op-{seed}-{int(start_time * 1000):x}-"
        self._count = 0
        self._pending: list[_Pending] = []
        self._block_time = np.array([c.block_time for c in self.config.chains])
        # Each (chain, token) quotes at ``tick_rate`` in total, split over the dexes listing it.
        key = m.pool_chain * len(self.config.tokens) + m.pool_token
        self._tick_rate = self.config.tick_rate / np.bincount(key)[key]

    @property
    def now(self) -> float:
        """Current sim time, Unix seconds."""
        return self._start + self._elapsed

    def advance(self, dt: float) -> Step:
        """Move the clock by ``dt`` seconds; return the events stamped in ``(now, now + dt]``."""
        if dt < 0:
            raise ValueError(f"dt must be >= 0, got {dt}")
        end = self._elapsed + dt
        shift_at = self.config.regime_shift_at
        prices: list[PriceTick] = []
        opportunities: list[Opportunity] = []
        outcomes: list[Outcome] = []
        truths: list[TruthInputs] = []
        probabilities: list[np.ndarray] = []
        while self._elapsed < end:
            stop = min(end, self._elapsed + self.config.max_substep)
            if shift_at is not None and self._elapsed < shift_at < stop:
                stop = shift_at
            shifted = shift_at is not None and self._elapsed >= shift_at
            t0, self._elapsed = self.now, stop
            t1 = self.now
            self._market.step(t1 - t0, shifted=shifted)
            prices += self._ticks(t0, t1)
            priced, times = self._scan(t0, t1)
            found, p = self._opportunities(priced, times)
            opportunities += found
            truths.append(priced.truth)
            probabilities.append(p)
            outcomes += self._settle(t1)
        p = np.concatenate(probabilities) if probabilities else np.empty(0)
        return Step(prices, opportunities, outcomes, p, concat(truths))

    def run(
        self, *, opportunities: int | None = None, duration: float | None = None, dt: float = 0.1
    ) -> Iterator[Step]:
        """Yield steps of ``dt`` until ``duration`` seconds pass or ``opportunities`` are out.

        With ``opportunities=N`` exactly N opportunities are yielded: the last step is cut at
        the N-th one's timestamp (later events of that step are dropped). With neither limit the
        stream is endless.
        """
        if dt <= 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        if opportunities is not None and duration is None and self.config.opportunity_rate == 0:
            raise ValueError("opportunity_rate is 0: `opportunities` would never be reached")
        emitted, end = 0, None if duration is None else self._elapsed + duration
        while opportunities is None or emitted < opportunities:
            if end is not None and end - self._elapsed <= 1e-9:
                return
            step = self.advance(dt if end is None else min(dt, end - self._elapsed))
            if opportunities is not None and emitted + len(step.opportunities) > opportunities:
                step = _cut(step, opportunities - emitted)
            emitted += len(step.opportunities)
            yield step

    def _times(self, t0: float, t1: float, n: int) -> np.ndarray:
        """``n`` sorted uniform timestamps in ``(t0, t1]``."""
        times = np.sort(t0 + (t1 - t0) * (1.0 - self._rng.random(n)))
        return np.maximum(times, np.nextafter(t0, np.inf))

    def _ticks(self, t0: float, t1: float) -> list[PriceTick]:
        m = self._market
        counts = self._rng.poisson(self._tick_rate * (t1 - t0))
        pools = self._rng.permutation(np.repeat(np.arange(len(counts)), counts))
        times = self._times(t0, t1, len(pools))
        names = m.pool_names
        return [
            PriceTick(
                chain=names[p][0],
                token=names[p][1],
                dex=names[p][2],
                price=price,
                volume=volume,
                liquidity=depth,
                gas_price=gas,
                timestamp=t,
            )
            for p, price, volume, depth, gas, t in zip(
                pools.tolist(),
                m.pool_price[pools].tolist(),
                m.tick_volumes(pools).tolist(),
                m.depth[pools].tolist(),
                m.gas_price[m.pool_chain[pools]].tolist(),
                times.tolist(),
                strict=True,
            )
        ]

    def _scan(self, t0: float, t1: float) -> tuple[Priced, np.ndarray]:
        """The scanner's reports in ``(t0, t1]`` with their timestamps (sorted)."""
        n = int(self._rng.poisson(self.config.opportunity_rate * (t1 - t0)))
        quotes = self._routes.quote()
        priced = self._routes.price(self._routes.choose(n, quotes.score), quotes)
        return priced, self._times(t0, t1, n)

    def _opportunities(self, q: Priced, times: np.ndarray) -> tuple[list[Opportunity], np.ndarray]:
        """Opportunity events for the scanner's reports; their outcomes are queued."""
        rng, n, names = self._rng, len(q.routes), self._routes.names
        p = success_probability(q.truth)
        success = rng.random(n) < p
        executed = rng.random(n) < self.config.outcome_fraction
        block = self._block_time[self._routes.chain[q.routes]]
        extra = np.searchsorted(np.cumsum(EXTRA_BLOCKS_P), rng.random(n), side="right")
        executed_at = times + block * (rng.random(n) + extra) + rng.uniform(*JITTER, n)
        gas_used = np.round(
            q.gas_estimate
            * np.where(success, rng.uniform(*SUCCESS_GAS, n), rng.uniform(*REVERT_GAS, n))
        )
        gas_cost = q.gas_cost_usd / q.gas_estimate * gas_used
        gas_cost *= rng.lognormal(0.0, GAS_PRICE_DRIFT, n)
        output = q.expected_output * (1.0 - rng.normal(*OUTPUT_NOISE, n))
        realized = np.where(success, output - q.input_amount - gas_cost, -gas_cost)

        ids = [f"{self._id_prefix}{k}" for k in range(self._count, self._count + n)]
        self._count += n
        events = []
        for i, (r, t, amount, out, gas, profit, conf) in enumerate(
            zip(
                q.routes.tolist(),
                times.tolist(),
                q.input_amount.tolist(),
                q.expected_output.tolist(),
                q.gas_estimate.tolist(),
                q.profit_usd.tolist(),
                q.confidence.tolist(),
                strict=True,
            )
        ):
            chain, tokens, dexes, route = names[r]
            events.append(
                Opportunity(
                    opportunity_id=ids[i],
                    route_id=route,
                    chain=chain,
                    tokens=list(tokens),
                    dexes=list(dexes),
                    input_amount=amount,
                    expected_output=out,
                    gas_estimate=gas,
                    profit_usd=profit,
                    confidence_score=conf,
                    timestamp=t,
                )
            )
        done = np.flatnonzero(executed)
        for i, at, ok, gain, used, cost in zip(
            done.tolist(),
            executed_at[done].tolist(),
            success[done].tolist(),
            realized[done].tolist(),
            gas_used[done].tolist(),
            gas_cost[done].tolist(),
            strict=True,
        ):
            route, chain = events[i].route_id, events[i].chain
            heapq.heappush(self._pending, (at, ids[i], route, chain, ok, gain, used, cost))
        return events, p

    def _settle(self, until: float) -> list[Outcome]:
        """Outcomes whose block has landed by ``until``, in time order."""
        settled = []
        while self._pending and self._pending[0][0] <= until:
            at, oid, route, chain, ok, realized, gas_used, gas_cost = heapq.heappop(self._pending)
            settled.append(
                Outcome(
                    opportunity_id=oid,
                    route_id=route,
                    chain=chain,
                    success=ok,
                    realized_profit_usd=realized,
                    gas_used=gas_used,
                    gas_cost_usd=gas_cost,
                    executed_at=at,
                )
            )
        return settled


def _cut(step: Step, keep: int) -> Step:
    """The part of ``step`` up to and including its ``keep``-th opportunity."""
    cutoff = step.opportunities[keep - 1].timestamp
    truth = TruthInputs(**{k: v[:keep] for k, v in vars(step.truth_inputs).items()})
    return Step(
        [e for e in step.prices if e.timestamp <= cutoff],
        step.opportunities[:keep],
        [e for e in step.outcomes if e.executed_at <= cutoff],
        step.success_probability[:keep],
        truth,
    )
