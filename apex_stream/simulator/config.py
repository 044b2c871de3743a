"""Knobs of the market simulator, with defaults shaped like a small real DEX market.

Every number that sets the character of the market lives here, so a test or a demo can change
one (a faster opportunity rate, a forced regime shift) without touching the processes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenSpec:
    """A token's starting mid price and how much it moves."""

    symbol: str
    price: float
    #: Normal-regime volatility of the mid price, in basis points per sqrt(second).
    volatility: float
    #: Typical USD depth of its pools on a deep dex on ethereum.
    depth: float
    stable: bool = False


@dataclass(frozen=True)
class DexSpec:
    """A venue: what a swap costs and how deep its pools are relative to the token's depth."""

    name: str
    #: Swap fee as a fraction of the amount in.
    fee: float
    #: Gas units one swap hop costs on this venue.
    hop_gas: int
    depth: float
    #: Tokens it lists; ``None`` lists every token of the chain.
    lists: frozenset[str] | None = None


@dataclass(frozen=True)
class ChainSpec:
    """A chain: its tokens and venues, block time, gas price level and share of the flow."""

    name: str
    tokens: tuple[str, ...]
    dexes: tuple[str, ...]
    #: Seconds between blocks; outcomes land a few blocks after their opportunity.
    block_time: float
    #: Typical gas price in gwei (the mean of its mean-reverting log process).
    gas_gwei: float
    #: Pool depth relative to ethereum's.
    depth: float
    #: Share of the opportunity flow.
    share: float
    #: Size of price dislocations relative to a fast chain (slow blocks let them build up).
    dislocation: float = 1.0
    #: Token gas is paid in (its mid price turns gas into USD).
    gas_token: str = "WETH"


_CURVE_LISTS = frozenset({"USDC", "USDT", "DAI", "WETH", "WBTC", "cbETH"})

DEFAULT_TOKENS: tuple[TokenSpec, ...] = (
    TokenSpec("WETH", 3_000.0, 1.5, 80e6),
    TokenSpec("WBTC", 95_000.0, 1.2, 40e6),
    TokenSpec("USDC", 1.0, 0.02, 100e6, stable=True),
    TokenSpec("USDT", 1.0, 0.03, 80e6, stable=True),
    TokenSpec("DAI", 1.0, 0.03, 30e6, stable=True),
    TokenSpec("LINK", 15.0, 2.5, 10e6),
    TokenSpec("UNI", 9.0, 2.8, 8e6),
    TokenSpec("AAVE", 180.0, 2.6, 8e6),
    TokenSpec("LDO", 1.5, 3.0, 5e6),
    TokenSpec("MKR", 1_500.0, 2.6, 4e6),
    TokenSpec("CRV", 0.5, 3.2, 4e6),
    TokenSpec("PEPE", 1e-5, 4.5, 6e6),
    TokenSpec("ARB", 0.8, 3.0, 30e6),
    TokenSpec("GMX", 25.0, 3.0, 10e6),
    TokenSpec("cbETH", 3_300.0, 1.5, 60e6),
    TokenSpec("AERO", 1.2, 3.5, 25e6),
    TokenSpec("DEGEN", 0.008, 5.0, 8e6),
)

DEFAULT_DEXES: tuple[DexSpec, ...] = (
    DexSpec("uniswap_v3", 0.0005, 130_000, 1.0),
    DexSpec("sushiswap", 0.0030, 110_000, 0.3),
    DexSpec("curve", 0.0004, 170_000, 0.6, lists=_CURVE_LISTS),
    DexSpec("balancer", 0.0010, 150_000, 0.3),
    DexSpec("camelot", 0.0020, 120_000, 0.4),
    DexSpec("aerodrome", 0.0005, 125_000, 0.8),
)

DEFAULT_CHAINS: tuple[ChainSpec, ...] = (
    ChainSpec(
        "ethereum",
        ("WETH", "USDC", "USDT", "DAI", "WBTC", "LINK", "UNI", "AAVE", "LDO", "MKR", "CRV", "PEPE"),
        ("uniswap_v3", "sushiswap", "curve", "balancer"),
        block_time=12.0,
        gas_gwei=15.0,
        depth=1.0,
        share=0.3,
        dislocation=2.0,
    ),
    ChainSpec(
        "arbitrum",
        ("WETH", "USDC", "USDT", "DAI", "WBTC", "ARB", "GMX", "LINK", "UNI", "AAVE"),
        ("uniswap_v3", "sushiswap", "camelot", "curve"),
        block_time=0.25,
        gas_gwei=0.05,
        depth=0.5,
        share=0.4,
    ),
    ChainSpec(
        "base",
        ("WETH", "USDC", "DAI", "WBTC", "cbETH", "AERO", "DEGEN", "LINK"),
        ("uniswap_v3", "aerodrome", "sushiswap"),
        block_time=2.0,
        gas_gwei=0.02,
        depth=0.4,
        share=0.3,
    ),
)


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes a simulated market; the defaults drive the demo and the tests."""

    chains: tuple[ChainSpec, ...] = DEFAULT_CHAINS
    tokens: tuple[TokenSpec, ...] = DEFAULT_TOKENS
    dexes: tuple[DexSpec, ...] = DEFAULT_DEXES
    #: Quotes per second per (chain, token), spread evenly over the dexes that list it.
    tick_rate: float = 4.0
    #: Opportunities per second of sim time, over all chains.
    opportunity_rate: float = 200.0
    #: Fraction of opportunities that are executed and so get an outcome.
    outcome_fraction: float = 1.0
    #: Candidate routes the scanner watches per chain (a mix of 2-, 3- and 4-hop cycles).
    routes_per_chain: int = 400
    #: Share of 2-, 3- and 4-hop routes among them.
    hop_mix: tuple[float, float, float] = (0.3, 0.35, 0.35)
    #: Seconds after ``start_time`` at which the whole market shifts to a harsher regime
    #: (higher volatility, more stress, other ground-truth coefficients); ``None``: never.
    regime_shift_at: float | None = None
    #: Longest internal step in seconds; ``advance`` splits longer intervals so quotes stay fresh.
    max_substep: float = 0.1

    def __post_init__(self) -> None:
        known_tokens = {t.symbol for t in self.tokens}
        known_dexes = {d.name for d in self.dexes}
        for chain in self.chains:
            names = set(chain.tokens) | {chain.gas_token}
            missing = (names - known_tokens) | (set(chain.dexes) - known_dexes)
            if missing:
                raise ValueError(f"chain {chain.name} names unknown tokens/dexes {sorted(missing)}")
        if not 0.0 <= self.outcome_fraction <= 1.0:
            raise ValueError(f"outcome_fraction must be in [0, 1], got {self.outcome_fraction}")
        if self.opportunity_rate < 0 or self.tick_rate < 0 or self.max_substep <= 0:
            raise ValueError("rates must be >= 0 and max_substep > 0")
