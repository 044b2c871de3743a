"""The stream pipeline on the real broker: opportunities in, predictions out, with every member's
score and version; invalid input in the dead-letter topic; outcomes teaching the online learner;
two workers sharing the work; state surviving a restart; the scoring API."""

from __future__ import annotations

import pickle
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from aiokafka.admin import NewTopic

from apex_stream.client import EventProducer, kafka_admin, kafka_producer
from apex_stream.events import Alert, DeadLetter, Metric, Opportunity, Prediction, decode
from apex_stream.inference import members
from apex_stream.inference.online_member import OnlineLearner
from apex_stream.inference.registry import Registry
from apex_stream.settings import ROOT, Settings
from apex_stream.simulator import MarketSimulator
from apex_stream.topics import TopicAdmin
from tests.support.events import FileOpeningPickle
from tests.support.waiting import wait_for
from tests.support.worker import collect, get, metrics, post, running_worker, worker_env

MEMBERS = set(members.MEMBERS)
pytestmark = pytest.mark.slow


def market(n: int, seed: int = 0) -> tuple[list, list[Opportunity], list]:
    """Prices, opportunities and outcomes of ``n`` opportunities, stamped in the recent past."""
    sim = MarketSimulator(seed, start_time=time.time() - n / 200 - 5)
    prices, opportunities, outcomes = [], [], []
    for step in sim.run(opportunities=n):
        prices += step.prices
        opportunities += step.opportunities
        outcomes += step.outcomes
    return prices, opportunities, outcomes


async def create_topics(settings: Settings) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()


INVALID = {
    b"not json at all": "not valid JSON",
    b'{"opportunity_id": "x"}': "missing required field",
    b'{"opportunity_id": 1}': "got `int` - at `$.opportunity_id`",
}


async def test_twenty_thousand_opportunities_scored_and_invalid_dead_lettered(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    await create_topics(settings)
    prices, opportunities, _ = market(20_000)
    with running_worker(settings, free_port, tmp_path / "worker.log"):
        async with EventProducer(settings) as producer:
            await producer.send_many(prices)
            await producer.send_many(opportunities)
        async with kafka_producer(settings) as raw:
            for payload in INVALID:
                await raw.send_and_wait(settings.topic_name("opportunities"), payload, key=b"bad")
        predictions = await collect(settings, "predictions", 20_000, timeout=180)
        letters = await collect(settings, "dead-letters", len(INVALID), timeout=30)

    decoded = [decode(m.value, Prediction) for m in predictions]
    by_id = {o.opportunity_id: o for o in opportunities}
    assert {p.opportunity_id for p in decoded} == by_id.keys()
    for p in decoded:
        assert set(p.model_scores) == MEMBERS and set(p.model_versions) == MEMBERS
        assert all(0.0 <= s <= 1.0 for s in p.model_scores.values())
        assert p.decision == (p.score > p.threshold) and p.strategy == "stacking"
        assert p.latency_ms >= 0
        # the expected profit at the score: the quote's net profit against its gas (float32
        # features: within 6e-8 of the input amount)
        o = by_id[p.opportunity_id]
        gas = max(o.expected_output - o.input_amount - o.profit_usd, 0.0)
        assert p.decision_rule == "threshold" and p.expected_profit_usd == pytest.approx(
            p.score * o.profit_usd - (1 - p.score) * gas, abs=0.02
        )
    reasons = {
        decode(m.value, DeadLetter).payload.encode(): decode(m.value, DeadLetter) for m in letters
    }
    assert reasons.keys() == INVALID.keys()
    for payload, expected in INVALID.items():
        letter = reasons[payload]
        assert expected in letter.reason
        assert letter.source_topic == settings.topic_name("opportunities")
        assert letter.source_key == "bad" and letter.offset >= 0


async def test_outcomes_teach_the_online_learner(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    await create_topics(settings)
    prices, opportunities, outcomes = market(6_000, seed=4)
    assert len(outcomes) >= 5_000
    port = free_port
    with running_worker(settings, port, tmp_path / "worker.log") as _:
        before = get(port, "/models/summary")["online_learned"]
        async with EventProducer(settings) as producer:
            # the market first, so each opportunity is scored with its route's market state
            # (Kafka keeps no order across topics: sent together, some would be scored first)
            await producer.send_many(prices)
            await wait_for(
                lambda: metrics(port).get("apex_price_ticks_total", 0) >= len(prices),
                60,
                "the price ticks applied",
            )
            await producer.send_many(opportunities)
            await producer.flush()
            await producer.send_many(outcomes)
        await wait_for(
            lambda: get(port, "/models/summary")["online_learned"] - before >= len(outcomes),
            120,
            "every outcome learned",
            every=1,
        )
        summary = get(port, "/models/summary")
        # the monitor's periodic figures reach the metrics topic (for the dashboard)
        figures = [decode(m.value, Metric) for m in await collect(settings, "metrics", 1, 20)]
        predictions = [
            decode(m.value, Prediction)
            for m in await collect(settings, "predictions", len(opportunities), timeout=60)
        ]
    assert summary["online_learned"] - before == len(outcomes)
    online = summary["performance"]["online@1.0.0"]
    assert online["samples"] == len(outcomes) >= 5_000
    # AUC of each member's scores against realised success over 5,000+ outcomes: by chance it
    # would be 0.5 ± ~0.01; the simulator's signal puts it far above (0.73-0.83 here with the
    # prices applied first; sent together with the opportunities the online member's fell to
    # 0.59-0.66, as more opportunities were scored before their tokens' prices)
    assert online["auc"] > 0.6
    for member in MEMBERS:
        assert summary["performance"][f"{member}@1.0.0"]["auc"] > 0.6
    assert figures and figures[0].source.startswith("worker-")
    assert {"scored", "latency_p99_ms", "online_error_rate"} <= figures[0].values.keys()
    # with the market applied first, predictions carry their route tokens' forecasts
    # (models/forecast.json), near the tokens' quotes; a horizon whose time has passed by the
    # opportunity (a token quoted more than h seconds before it) is left out, the shortest first
    quoted = {(t.chain, t.token): t.price for t in prices}
    tokens = {o.opportunity_id: o.tokens for o in opportunities}
    carried = [p for p in predictions if p.price_forecasts is not None]
    assert len(carried) >= 0.95 * len(predictions)
    labels = ["5s", "10s", "15s", "30s"]
    complete = 0
    for p in carried:
        assert p.price_forecasts is not None
        assert set(p.price_forecasts) <= set(tokens[p.opportunity_id])
        complete += set(p.price_forecasts) == set(tokens[p.opportunity_id])
        for token, forecast in p.price_forecasts.items():
            assert list(forecast) == labels[len(labels) - len(forecast) :]
            assert all(abs(f / quoted[(p.chain, token)] - 1) < 0.02 for f in forecast.values())
    assert complete >= 0.9 * len(carried)
    volatility = [p for p in predictions if p.volatility_forecast]
    assert len(volatility) >= 0.5 * len(predictions)
    assert all(v > 0 for p in volatility for v in (p.volatility_forecast or {}).values())


async def test_two_workers_share_the_partitions_and_score_everything(
    settings: Settings, tmp_path: Path, free_ports: Callable[[int], list[int]]
) -> None:
    await create_topics(settings)
    prices, opportunities, _ = market(10_000, seed=9)
    a, b = free_ports(2)
    with (
        running_worker(settings, a, tmp_path / "a.log"),
        running_worker(settings, b, tmp_path / "b.log"),
    ):
        await _until_both_assigned(settings, a, b)
        async with EventProducer(settings) as producer:
            await producer.send_many([*prices, *opportunities])
        predictions = await collect(settings, "predictions", 10_000, timeout=180)
        scored = [_scored_count(a), _scored_count(b)]
    ids = {decode(m.value, Prediction).opportunity_id for m in predictions}
    assert ids == {o.opportunity_id for o in opportunities}
    assert all(n > 0 for n in scored), scored  # both workers took a share


async def _until_both_assigned(settings: Settings, *ports: int) -> None:
    """Wait until the group has settled: every worker holds some opportunities partitions."""
    topic = settings.topic_name("opportunities")

    def settled() -> bool:
        held = [
            [a for a in get(port, "/health")["assigned"] if a.startswith(topic + ":")]
            for port in ports
        ]
        return all(held)

    await wait_for(settled, 60, "every worker holding opportunities partitions")


def _scored_count(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(v)
        for v in re.findall(r"^apex_opportunities_scored_total\{[^}]*\} (\S+)$", text, re.M)
    )


async def test_market_state_and_online_learner_survive_a_restart(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    await create_topics(settings)
    prices, opportunities, outcomes = market(3_000, seed=2)
    port = free_port
    with running_worker(settings, port, tmp_path / "1.log"):
        async with EventProducer(settings) as producer:
            await producer.send_many([*prices, *opportunities, *outcomes])

        def online_samples() -> int:
            performance = get(port, "/models/summary")["performance"]
            return performance.get("online@1.0.0", {}).get("samples", 0)

        await wait_for(
            lambda: online_samples() >= len(outcomes), 90, "every outcome learned", every=1
        )
        learned = get(port, "/models/summary")["online_learned"]
        tokens = get(port, "/health")["market_tokens"]
    assert tokens > 0
    with running_worker(settings, port, tmp_path / "2.log"):
        # nothing new was produced: state can only come from the tables' changelogs
        await wait_for(lambda: get(port, "/health")["recovered"], 60, "the tables' recovery")
        # the learner snapshot is taken every learner_snapshot_every outcomes; the learner is
        # restored from it by a task that starts after the recovery
        every = Settings().learner_snapshot_every
        await wait_for(
            lambda: get(port, "/models/summary")["online_learned"] >= learned - every,
            60,
            "the online learner restored from its snapshot",
        )
        assert get(port, "/health")["market_tokens"] == tokens
        _, body = post(port, "/predict/single", msgspec.json.encode(opportunities[-1]))
        assert body["model_scores"].keys() == MEMBERS
        summary = get(port, "/models/summary")
        assert summary["online_learned"] >= learned - every


async def test_scoring_api(settings: Settings, tmp_path: Path, free_port: int) -> None:
    await create_topics(settings)
    prices, opportunities, _ = market(2_000, seed=6)
    port = free_port
    with running_worker(settings, port, tmp_path / "worker.log"):
        async with EventProducer(settings) as producer:
            await producer.send_many(prices)
        batch = msgspec.json.encode(opportunities)
        status, body = post(port, "/predict/batch", batch)
        assert status == 200
        assert len(body["predictions"]) == 2_000
        assert body["timing"]["total_ms"] > 0
        first = body["predictions"][0]
        assert first["model_versions"] == {m: "1.0.0" for m in MEMBERS}
        assert first["opportunity_id"] == opportunities[0].opportunity_id
        assert first["decision"] == (first["score"] > body["threshold"])

        status, single = post(port, "/predict/single", msgspec.json.encode(opportunities[0]))
        assert status == 200 and single["model_scores"].keys() == MEMBERS

        bad = msgspec.json.encode([msgspec.to_builtins(opportunities[0]) | {"gas_estimate": -1}])
        status, error = post(port, "/predict/batch", bad)
        assert status == 422
        assert error["detail"][0]["loc"] == ["body", "opportunities", 0]
        assert "gas_estimate" in error["detail"][0]["msg"]
        status, error = post(port, "/predict/batch", b"{")
        assert status == 400
        health = get(port, "/health")
        assert health["status"] == "ok" and health["providers"]["onnx"] == "CPUExecutionProvider"
        assert health["reasons"] == [] and single["voters"] == list(members.MEMBERS)
        # Faust's own web views (its router and tables) are not served
        for path in ("/router", "/table", "/table/learner-state"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                get(port, path)
            refused.value.close()
            assert refused.value.code == 404, path


async def test_a_tampered_learner_snapshot_is_refused(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    await create_topics(settings)
    app_id = worker_env(settings, free_port)["APEX_APP_ID"]
    changelog = f"{app_id}-{settings.topic_prefix}learner-state-changelog"
    admin = kafka_admin(settings)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact"}
        await admin.create_topics([NewTopic(changelog, 1, 1, topic_configs=config)])
    finally:
        await admin.close()
    marker = tmp_path / "ran"
    producer = kafka_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            changelog, pickle.dumps(FileOpeningPickle(marker)), app_id.encode()
        )
    finally:
        await producer.stop()

    port = free_port
    with running_worker(settings, port, tmp_path / "worker.log"):
        alerts = [decode(m.value, Alert) for m in await collect(settings, "alerts", 1, 30)]
        summary = get(port, "/models/summary")
    assert not marker.exists()  # nothing ran from it
    [refused] = [a for a in alerts if a.kind == "online.snapshot-refused"]
    assert refused.severity == "critical" and "not an online-learner snapshot" in refused.message
    registry = Registry(ROOT / "models")
    shipped = OnlineLearner.restore(registry.load_bytes(registry.active("online")))
    assert summary["online_learned"] == shipped.learned  # it continues from the shipped model
