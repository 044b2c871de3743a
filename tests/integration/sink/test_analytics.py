"""Each analytics query against the same figures computed independently from the events."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import create_engine, pool

from apex_stream.events import Opportunity, Outcome, Prediction, PriceTick
from apex_stream.simulator import MarketSimulator
from apex_stream.sink import migrations
from apex_stream.sink.analytics import run
from apex_stream.sink.rows import TABLES
from apex_stream.sink.writer import write
from tests.support.events import prediction_for

SINCE = datetime(2020, 1, 1, tzinfo=UTC)
VERSIONS = ("1.0.0", "1.1.0")


def jsonb_text(version: str) -> str:
    return f'{{"xgboost": "{version}"}}'


@pytest.fixture
def events(database: str) -> dict[type, list]:
    """A simulated market with predictions from two model versions, stored in ``database``."""
    migrations.upgrade(database, quiet=True)
    rng = np.random.default_rng(5)
    steps = list(MarketSimulator(21).run(opportunities=4_000))
    opportunities = [o for s in steps for o in s.opportunities]
    predictions = []
    for o in opportunities:
        score = float(rng.random())
        predictions.append(
            prediction_for(
                o,
                score,
                model_versions={"xgboost": VERSIONS[int(o.route_id[-1], 16) % 2]},
                latency_ms=float(rng.gamma(2.0, 3.0)),
                timestamp=o.timestamp + 0.005,
            )
        )
    stored = {
        PriceTick: [p for s in steps for p in s.prices],
        Opportunity: opportunities,
        Prediction: predictions,
        Outcome: [o for s in steps for o in s.outcomes],
    }
    engine = create_engine(database, poolclass=pool.NullPool)
    for cls, evs in stored.items():
        write(engine, TABLES[cls], [TABLES[cls].encode(e, 0, i) for i, e in enumerate(evs)])
    engine.dispose()
    return stored


def query(database: str, name: str) -> list[dict]:
    engine = create_engine(database, poolclass=pool.NullPool)
    columns, rows = run(engine, name, SINCE)
    engine.dispose()
    return [dict(zip(columns, r, strict=True)) for r in rows]


def bucket(seconds: float, width: int) -> datetime:
    # date_bin / time_bucket origin 2000-01-03 lies on a whole hour and minute
    return datetime.fromtimestamp(seconds // width * width, UTC)


def test_predictions_per_minute(database: str, events: dict[type, list]) -> None:
    groups: dict[tuple, list[Prediction]] = defaultdict(list)
    for p in events[Prediction]:
        groups[
            (bucket(p.opportunity_timestamp, 60), jsonb_text(p.model_versions["xgboost"]))
        ].append(p)
    rows = query(database, "predictions-per-minute")
    assert len(rows) == len(groups)
    for row in rows:
        ps = groups[(row["bucket"], row["model_versions"])]
        scores = np.array([p.score for p in ps])
        latency = np.array([p.latency_ms for p in ps])
        assert row["predictions"] == len(ps)
        assert row["executable_share"] == pytest.approx(np.mean([p.decision for p in ps]))
        assert row["mean_score"] == pytest.approx(scores.mean())
        assert row["score_p50"] == pytest.approx(np.percentile(scores, 50))
        assert row["score_p90"] == pytest.approx(np.percentile(scores, 90))
        assert row["latency_p99_ms"] == pytest.approx(np.percentile(latency, 99))


def outcome_groups(events: dict[type, list]) -> dict[tuple, list[tuple]]:
    prediction = {p.opportunity_id: p for p in events[Prediction]}
    groups: dict[tuple, list[tuple]] = defaultdict(list)
    for o in events[Outcome]:
        p = prediction[o.opportunity_id]
        key = (
            bucket(o.executed_at, 3600),
            o.chain,
            o.route_id,
            jsonb_text(p.model_versions["xgboost"]),
        )
        groups[key].append((o, p))
    return groups


def test_outcomes_per_hour(database: str, events: dict[type, list]) -> None:
    groups = outcome_groups(events)
    rows = query(database, "outcomes-per-hour")
    assert len(rows) == len(groups)
    for row in rows:
        pairs = groups[(row["bucket"], row["chain"], row["route_id"], row["model_versions"])]
        executed = [(o, p) for o, p in pairs if p.decision]
        assert row["outcomes"] == len(pairs) and row["executed"] == len(executed)
        assert row["win_rate"] == pytest.approx(np.mean([o.success for o, _ in pairs]))
        if executed:
            assert row["precision"] == pytest.approx(np.mean([o.success for o, _ in executed]))
        else:
            assert row["precision"] is None
        assert row["realized_profit_usd"] == pytest.approx(
            sum(o.realized_profit_usd for o, _ in executed)
        )
        assert row["gas_spent_usd"] == pytest.approx(sum(o.gas_cost_usd for o, _ in executed))


def test_ab_comparison(database: str, events: dict[type, list]) -> None:
    prediction = {p.opportunity_id: p for p in events[Prediction]}
    rows = {r["model_versions"]: r for r in query(database, "ab-comparison")}
    assert set(rows) == {jsonb_text(v) for v in VERSIONS}
    for version in VERSIONS:
        pairs = [
            (o, prediction[o.opportunity_id])
            for o in events[Outcome]
            if prediction[o.opportunity_id].model_versions["xgboost"] == version
        ]
        executed = [o for o, p in pairs if p.decision]
        row = rows[jsonb_text(version)]
        assert row["outcomes"] == len(pairs) and row["executed"] == len(executed)
        assert row["win_rate"] == pytest.approx(np.mean([o.success for o, _ in pairs]))
        assert row["precision"] == pytest.approx(np.mean([o.success for o in executed]))
        assert row["realized_profit_usd"] == pytest.approx(
            sum(o.realized_profit_usd for o in executed)
        )


def test_token_summary(database: str, events: dict[type, list]) -> None:
    groups: dict[tuple, list[PriceTick]] = defaultdict(list)
    for t in events[PriceTick]:
        groups[(t.chain, t.token)].append(t)
    rows = query(database, "token-summary")
    assert len(rows) == len(groups)
    for row in rows:
        ticks = groups[(row["chain"], row["token"])]
        prices = np.array([t.price for t in ticks])
        assert row["ticks"] == len(ticks)
        assert row["price_min"] == pytest.approx(prices.min())
        assert row["price_max"] == pytest.approx(prices.max())
        assert row["price_mean"] == pytest.approx(prices.mean())
        assert row["liquidity_min"] == pytest.approx(min(t.liquidity for t in ticks))
        assert row["volume"] == pytest.approx(sum(t.volume for t in ticks))
