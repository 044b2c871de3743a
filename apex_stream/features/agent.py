"""The prices agent: rolling market state from the prices topic, shared through a GlobalTable.

Prices are keyed by ``chain:token``, so each token's ticks reach one worker, which alone updates
that token's state (in event-time order) and publishes it to the ``market-state`` GlobalTable.
Every worker reads every token from that table, so an opportunity on any worker sees the whole
route. The table's changelog is the durable copy: after a restart or a rebalance, the new owner
of a token continues from the published state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.types import AppT, StreamT

from ..app import Pipeline
from ..deadletter import split_valid
from ..events import PriceTick
from ..metrics import PRICE_TICKS
from .forecast import load_params
from .market import MarketState


class MarketView:
    """A worker's read side: a local MarketState refreshed from the GlobalTable per batch."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.table = pipeline.market
        self.state = MarketState()

    def refresh(self, keys: Iterable[str]) -> MarketState:
        """Load the current published state of these ``chain:token`` keys."""
        table = self.table
        self.state.load({k: blob for k in keys if (blob := table.get(k.encode())) is not None})
        return self.state


def attach(pipeline: Pipeline) -> None:
    """Register the prices agent on the pipeline's app."""
    settings = pipeline.settings
    # the owner of a token's prices keeps its forecasts in the state it publishes
    forecast = load_params(settings.models_dir)
    owned = MarketState(forecast=forecast)

    @pipeline.app.on_partitions_revoked.connect
    async def forget(app: AppT, /, *args: Any, **kwargs: Any) -> None:
        """Tokens may move to another worker: continue from the table, not stale local rows."""
        nonlocal owned
        owned = MarketState(forecast=forecast)

    async def apply(messages: list[Any]) -> None:
        ticks, _, rejected = split_valid(messages, PriceTick, timestamps_ms=False)
        await pipeline.dead_letter(rejected)
        if ticks:
            keys = {f"{t.chain}:{t.token}" for t in ticks}
            table = pipeline.market
            owned.load(
                {
                    k: blob
                    for k in keys - owned.rows.keys()
                    if (blob := table.get(k.encode())) is not None
                }
            )
            for key, blob in owned.export(owned.update(ticks)).items():
                table[key.encode()] = blob
            PRICE_TICKS.inc(len(ticks))

    @pipeline.app.agent(pipeline.prices, name="prices")
    async def prices(stream: StreamT[Any]) -> None:
        delay = settings.prices_batch_delay_ms / 1000
        # faust's StreamT interface lacks take_events, which its Stream (what agents get) has
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.batch_max_size, within=delay
        )
        async for events in batches:
            messages = [e.message for e in events]
            await pipeline.guarded(messages, apply(messages))
