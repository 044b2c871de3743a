"""The idempotent COPY writer on the real PostgreSQL, each test in a database of its own."""

from __future__ import annotations

import msgspec
from psycopg.types.json import Jsonb
from sqlalchemy import create_engine, pool, text

from apex_stream.events import Opportunity, Outcome, Prediction, PriceTick
from apex_stream.simulator import MarketSimulator
from apex_stream.sink import migrations
from apex_stream.sink.rows import TABLES
from apex_stream.sink.writer import write
from tests.support.events import prediction_for


def count(url: str, table: str) -> int:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        n = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return n


def simulated_events(n: int, *, features: bool = False) -> dict[type, list]:
    steps = list(MarketSimulator(8).run(opportunities=n))
    events: dict[type, list] = {
        PriceTick: [p for s in steps for p in s.prices],
        Opportunity: [o for s in steps for o in s.opportunities],
        Outcome: [o for s in steps for o in s.outcomes],
    }
    events[Prediction] = [
        prediction_for(
            o,
            0.7,
            feature_version="v1" if features and i % 3 else None,
            features=[0.5, None if i % 2 else 0.25, -1e-300, i * 1.5] if features and i % 3 else [],
        )
        for i, o in enumerate(events[Opportunity])
    ]
    return events


def simulated_rows(n: int) -> dict[type, list[bytes]]:
    """Rows in binary COPY form, as the sink writes them."""
    return {
        cls: [TABLES[cls].encode(e, 0, i) for i, e in enumerate(evs)]
        for cls, evs in simulated_events(n).items()
    }


def test_copy_writer_is_idempotent_and_keeps_values(database: str) -> None:
    migrations.upgrade(database, quiet=True)
    engine = create_engine(database, poolclass=pool.NullPool)
    rows = simulated_rows(3_000)
    for cls, batch in rows.items():
        spec = TABLES[cls]
        half = len(batch) // 2
        assert write(engine, spec, batch[:2] + batch[:2]) == 2  # duplicates within a batch
        assert write(engine, spec, batch[2:half]) == half - 2  # COPY straight into the table
        assert write(engine, spec, batch) == len(batch) - half  # half redelivered, half new
        assert write(engine, spec, batch) == 0  # a redelivery adds nothing
        assert count(database, spec.name) == len(batch)
    engine.dispose()


def test_binary_rows_store_the_reference_values(database: str) -> None:
    """``TableSpec.encode`` (the sink's hot path) stores exactly what ``TableSpec.row`` says:
    every column of every row, including times to the microsecond, arrays, jsonb and NULLs."""
    migrations.upgrade(database, quiet=True)
    engine = create_engine(database, poolclass=pool.NullPool)
    events = simulated_events(600, features=True)
    events[PriceTick] += [  # times whose microseconds fall exactly half-way: 7812.5, 23437.5
        msgspec.structs.replace(events[PriceTick][0], timestamp=1_700_000_000 + k / 128)
        for k in (1, 3)
    ]
    for cls, evs in events.items():
        spec = TABLES[cls]
        assert write(engine, spec, [spec.encode(e, 3, 7 + i) for i, e in enumerate(evs)]) == len(
            evs
        )
        expected = sorted(
            (tuple(v.obj if isinstance(v, Jsonb) else v for v in spec.row(e, 3, 7 + i)))
            for i, e in enumerate(evs)
        )
        with engine.connect() as connection:
            stored = connection.execute(
                text(f"SELECT {', '.join(spec.column_names)} FROM {spec.name}")
            ).all()
        assert sorted(tuple(r) for r in stored) == expected, spec.name
    engine.dispose()
