"""Write examples/history.csv, the example history `apex-stream models train --from` reads: a
simulated market of 2,000 opportunities (seed 2026, from noon UTC on 2026-01-01) with its price
ticks and outcomes, one event a row. Numbers are rounded to 9 significant digits and times to
the microsecond, so the file stays small and reads easily."""

import msgspec

from apex_stream.events import Event
from apex_stream.settings import ROOT
from apex_stream.simulator import MarketSimulator
from apex_stream.training.history import Events, write_history

OPPORTUNITIES, SEED, START = 2_000, 2026, 1_767_268_800.0
TIMES = ("timestamp", "executed_at")


def rounded(event: Event) -> Event:
    changes = {
        name: round(value, 6) if name in TIMES else float(f"{value:.9g}")
        for name in event.__struct_fields__
        if isinstance(value := getattr(event, name), float)
    }
    return msgspec.structs.replace(event, **changes)


sim = MarketSimulator(SEED, start_time=START)
prices, opportunities, outcomes = [], [], []
for step in sim.run(opportunities=OPPORTUNITIES):
    prices += map(rounded, step.prices)
    opportunities += map(rounded, step.opportunities)
    outcomes += map(rounded, step.outcomes)
path = ROOT / "examples" / "history.csv"
write_history(path, Events(prices, opportunities, outcomes))
print(
    f"wrote {path}: {len(prices):,} price ticks, {len(opportunities):,} opportunities, "
    f"{len(outcomes):,} outcomes"
)
