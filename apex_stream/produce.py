"""Streams the simulated market into Kafka, paced or as fast as possible."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .client import EventProducer
from .events import Event
from .settings import Settings
from .simulator import MarketSimulator, SimConfig

STEP_S = 0.05


async def produce_market(
    settings: Settings,
    *,
    rate: float,
    count: int | None,
    duration: float | None,
    outcomes: bool,
    seed: int,
    quiet: bool = False,
) -> Counter[str]:
    """Write prices, opportunities and (optionally) outcomes; returns messages sent per topic.

    ``rate`` is opportunities per second of wall time, each step sent when its sim time is due;
    ``rate <= 0`` sends as fast as possible, back-dating the market so no event is stamped in
    the future.
    """
    if count is None and duration is None:
        raise ValueError("give --count or --duration (or both)")
    paced = rate > 0
    config = SimConfig()
    if paced:
        config = replace(config, opportunity_rate=rate)
    elif count is None:
        raise ValueError("--rate 0 (as fast as possible) needs --count")
    span = (count / config.opportunity_rate) if count else (duration or 0.0)
    start = time.time() - (0.0 if paced else span + 1.0)
    sim = MarketSimulator(seed, start_time=start, config=config)
    sent: Counter[str] = Counter()
    wall0 = time.monotonic()
    progress = Progress(
        TextColumn("[bold]producing"),
        BarColumn(),
        TextColumn("{task.completed:,} opportunities"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        disable=quiet,
    )
    async with EventProducer(settings) as producer:
        with progress:
            task = progress.add_task("produce", total=count, detail="")
            for step in sim.run(opportunities=count, duration=duration, dt=STEP_S):
                events: list[Event] = [*step.prices, *step.opportunities]
                if outcomes:
                    events += step.outcomes
                await producer.send_many(events)
                sent.update(e.topic for e in events)
                elapsed = time.monotonic() - wall0
                progress.update(
                    task,
                    completed=sent["opportunities"],
                    detail=f"{sum(sent.values()) / max(elapsed, 1e-9):,.0f} msg/s",
                )
                if paced:
                    ahead = (sim.now - start) - elapsed
                    if ahead > 0:
                        await asyncio.sleep(ahead)
    return sent
