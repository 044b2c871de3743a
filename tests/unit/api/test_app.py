"""The worker's HTTP API over a worker built without a broker: seed 000's and seed 002's
documented calls, errors, auth and the OpenAPI document."""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from apex_stream.api.app import create_api, health_reasons
from apex_stream.api.state import WorkerState
from apex_stream.features import FEATURES
from apex_stream.features.agent import MarketView
from apex_stream.inference.ensemble import Ensemble, Scores
from apex_stream.inference.failures import Failures
from apex_stream.inference.registry import Manifest, Registry
from apex_stream.inference.scoring import Scorer
from apex_stream.learning.outcomes import Learning
from apex_stream.settings import ROOT, Settings
from tests.support.events import opportunity
from tests.support.models import bad_models
from tests.support.seeds import SEED_000_BATCH, SEED_002_PREDICT

SEED_BATCH = json.loads(SEED_000_BATCH)


def empty_view() -> MarketView:
    """A market view over no prices: market features are imputed."""
    return MarketView(SimpleNamespace(market={}))  # type: ignore[arg-type]


def worker_state(registry: Registry, **settings: Any) -> tuple[WorkerState, list[str]]:
    config = Settings(models_dir=registry.folder, **settings)
    ensemble = Ensemble(config)
    learning = Learning(
        ensemble.online,
        ensemble.online_means,
        config.threshold,
        2000,
        rule=config.decision_rule,
        min_expected_profit_usd=config.min_expected_profit_usd,
    )
    published: list[str] = []
    failures = Failures()

    async def publish(manifest: Manifest, reason: str) -> None:
        published.append(f"{manifest.revision}: {reason}")

    async def observe(scores: Scores) -> None:
        published.extend(a.message for a in failures.report(scores.failures, "score"))

    state = WorkerState(
        settings=config,
        scorer=Scorer(ensemble, empty_view()),
        learning=learning,
        registry=registry,
        market_view=empty_view,
        health=lambda: {"status": "ok"},
        publish=publish,
        observe=observe,
    )
    return state, published


def serve(state: WorkerState) -> TestClient:
    """A client of the API as a local caller (the API on loopback takes local host names)."""
    return TestClient(create_api(state), base_url="http://localhost")


@pytest.fixture
def client(registry: Registry) -> TestClient:
    state, _ = worker_state(registry)
    return serve(state)


def test_seed_000_batch_request_verbatim(client: TestClient) -> None:
    response = client.post("/predict/batch", json=SEED_BATCH)
    assert response.status_code == 200, response.text
    body = response.json()
    [p] = body["predictions"]
    for field in (
        "route_id",
        "prediction_score",
        "should_execute",
        "model_version_xgb",
        "model_version_onnx",
        "inference_time_ms",
        "timestamp",
    ):
        assert field in p
    assert p["route_id"] == "usdc_usdt_2hop"
    assert p["model_version_xgb"] == "1.0.0" and p["model_version_onnx"] == "1.0.0"
    assert p["should_execute"] == (p["prediction_score"] > 0.8)
    assert p["recommendation"] == ("EXECUTE" if p["should_execute"] else "SKIP")
    assert body["threshold"] == 0.8
    assert body["total_opportunities"] == 1
    assert body["executable_count"] == int(p["should_execute"])
    assert body["avg_inference_time_ms"] == pytest.approx(body["total_inference_time_ms"])
    assert body["use_gpu"] == {
        "requested": False,
        "used": False,
        "providers": {"xgboost": "cpu", "onnx": "CPUExecutionProvider", "online": "cpu"},
    }


def test_the_request_threshold_decides(client: TestClient) -> None:
    opportunities = [json.loads(_json(opportunity(i, f"r{i}", ["A", "B"]))) for i in range(50)]
    low = client.post("/predict/batch", json={"opportunities": opportunities, "threshold": 0.01})
    high = client.post("/predict/batch", json={"opportunities": opportunities, "threshold": 0.99})
    assert low.json()["executable_count"] == 50
    assert high.json()["executable_count"] == 0
    scores = [p["score"] for p in low.json()["predictions"]]
    assert scores == [p["score"] for p in high.json()["predictions"]]


def test_the_expected_profit_rule_decides_when_set(registry: Registry) -> None:
    state, _ = worker_state(registry, decision_rule="expected_profit")
    client = serve(state)
    opportunities = [json.loads(_json(opportunity(i, f"r{i}", ["A", "B"]))) for i in range(20)]
    body = client.post("/predict/batch", json={"opportunities": opportunities}).json()
    assert body["decision_rule"] == "expected_profit"
    for p in body["predictions"]:
        # 5 USD to win, 5 USD of gas to lose: worth it above an even chance
        assert p["decision"] == (p["expected_profit_usd"] > 0) == (p["score"] > 0.5)
    # a request's threshold moves only the threshold rule
    high = client.post("/predict/batch", json={"opportunities": opportunities, "threshold": 0.99})
    assert high.json()["executable_count"] == body["executable_count"]


def test_a_bare_array_and_the_single_forms(client: TestClient) -> None:
    o = json.loads(_json(opportunity(1, "r1", ["A", "B"])))
    batch = client.post("/predict/batch", json=[o]).json()
    alone = client.post("/predict/single", json=o).json()
    wrapped = client.post("/predict/single", json={"opportunity": o, "threshold": 0.3}).json()
    assert batch["predictions"][0]["score"] == alone["score"] == wrapped["score"]
    assert alone["threshold"] == 0.5 and wrapped["threshold"] == 0.3
    assert alone["opportunity_id"] == "o1"
    # every prediction carries its expected profit; the worker decides by the threshold rule
    # (quoted: 1,000 USD in, 1,010 out, 5 USD net, so 5 USD of gas)
    score = alone["score"]
    assert alone["expected_profit_usd"] == pytest.approx(score * 5 - (1 - score) * 5, abs=1e-3)
    assert alone["decision_rule"] == batch["decision_rule"] == "threshold"
    assert batch["predictions"][0]["expected_profit_usd"] == alone["expected_profit_usd"]
    broken = client.post("/predict/single", json={"opportunity": {"route_id": "x"}})
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["loc"] == ["body", "opportunity"]


def test_bad_requests_say_what_is_wrong(client: TestClient) -> None:
    json_type = {"Content-Type": "application/json"}
    assert client.post("/predict/batch", content=b"{nope", headers=json_type).status_code == 400
    # a cross-site form or text/plain POST (no CORS preflight) is refused
    o = json.loads(_json(opportunity(1, "r1", ["A", "B"])))
    plain = client.post(
        "/predict/batch", content=json.dumps([o]), headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 415
    response = client.post("/predict/batch", json={"opportunities": [{"route_id": "x"}]})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "opportunities", 0]
    response = client.post("/predict/batch", json={"opportunities": [], "threshold": 1.5})
    assert response.status_code == 422 and "threshold" in response.text
    assert client.post("/predict/batch", json={"opportunities": []}).status_code == 422
    assert client.post("/predict/batch", json=[o] * 10_001).status_code == 413


def test_a_token_guards_scoring_and_models_but_not_health(registry: Registry) -> None:
    state, _ = worker_state(registry, api_token="s3cret")
    client = serve(state)
    assert client.post("/predict/batch", json=SEED_BATCH).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/predict/batch", json=SEED_BATCH, headers=wrong).status_code == 401
    right = {"Authorization": "Bearer s3cret"}
    assert client.post("/predict/batch", json=SEED_BATCH, headers=right).status_code == 200
    assert client.get("/models/summary").status_code == 401
    assert client.get("/").status_code == 200
    assert client.get("/health").status_code == 200


def test_model_management_edits_the_registry_and_publishes(
    registry: Registry, tmp_path: Path
) -> None:
    state, published = worker_state(registry)
    client = serve(state)
    model = tmp_path / "xgboost_v1.1.0.json"
    shutil.copyfile(registry.folder / "xgboost-1.0.0.ubj", model)
    response = client.post(
        "/models/register",
        json={
            "model_type": "xgboost",
            "model_path": str(model),
            "version": "v1.1.0",  # seed 000's spelling
            "metrics": {"accuracy": 0.89, "precision": 0.88, "recall": 0.90},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["models"][0]["status"] == "candidate"
    again = client.post(
        "/models/register",
        json={"model_type": "xgboost", "model_path": str(model), "version": "1.1.0"},
    )
    assert again.status_code == 409 and "already registered" in again.text
    # a file that is not such a model is refused, the message names the file to register
    for member, path in (("xgboost", "/etc/passwd"), ("online", str(model))):
        not_a_model = {"model_type": member, "model_path": path, "version": "1.2.0"}
        refused = client.post("/models/register", json=not_a_model)
        assert refused.status_code == 409, refused.text
        assert f"{member}@1.2.0 does not load as a" in refused.json()["detail"]
        assert "register a file saved by" in refused.json()["detail"]
    response = client.post(
        "/models/ab-test",
        json={
            "model_type": "xgboost",
            "version_a": "v1.0.0",
            "version_b": "v1.1.0",
            "traffic_split": [0.8, 0.2],
        },
    )
    assert response.status_code == 200, response.text
    assert registry.manifest().serving("xgboost")[1].traffic == 0.2
    undecided = client.post("/models/promote-winner", json={"model_type": "xgboost"})
    assert undecided.status_code == 409 and "not decided yet" in undecided.text
    # the candidate wins 80 % of 400 executed trades, the active version 50 %
    book = state.learning.book
    for version, wins in (("1.0.0", 200), ("1.1.0", 320)):
        success = np.arange(400) < wins
        X = np.zeros((400, len(FEATURES)), dtype=np.float32)
        book.update("xgboost", version, np.ones(400), success, np.zeros(400), np.zeros(400), X)
    response = client.post("/models/promote-winner", json={"model_type": "xgboost"})
    assert response.status_code == 200, response.text
    assert response.json()["action"] == "promote"
    assert registry.active("xgboost").version == "1.1.0"
    assert [p.split(": ", 1)[1] for p in published] == [
        "registered xgboost@1.1.0",
        "A/B test of xgboost: 1.0.0=0.8, 1.1.0=0.2",
        "A/B test of xgboost: promote",
    ]


def test_model_routes_refuse_bad_models_with_the_reason(registry: Registry, tmp_path: Path) -> None:
    state, published = worker_state(registry)
    client = serve(state)
    manifest = registry.path.read_bytes()
    for kind, bad in bad_models(tmp_path).items():
        body = {"model_type": bad.name, "model_path": str(bad.file), "version": "1.1.0"}
        if bad.feature_version:
            body["feature_version"] = bad.feature_version
        refused = client.post("/models/register", json=body)
        assert refused.status_code == 409, (kind, refused.text)
        assert bad.reason in refused.json()["detail"], kind
    assert registry.path.read_bytes() == manifest and not published

    model = registry.folder / "xgboost-1.0.0.ubj"
    body = {"model_type": "xgboost", "model_path": str(model), "version": "1.1.0"}
    assert client.post("/models/register", json=body).status_code == 200
    (registry.folder / "xgboost-1.1.0.ubj").write_text("{}")  # corrupted after registration
    manifest = registry.path.read_bytes()
    split = {"model_type": "xgboost", "version_a": "1.0.0", "version_b": "1.1.0"}
    refused = client.post("/models/ab-test", json=split | {"traffic_split": [0.8, 0.2]})
    assert refused.status_code == 409
    assert "checksum mismatch for xgboost@1.1.0" in refused.json()["detail"]
    assert registry.path.read_bytes() == manifest and len(published) == 1


def test_seed_002_predict_status_and_metrics(registry: Registry) -> None:
    state, _ = worker_state(registry, threshold=0.78)
    client = serve(state)
    before = client.get("/status").json()["total_requests"]
    response = client.post("/predict", json=json.loads(SEED_002_PREDICT))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["threshold"] == 0.78 and answer["mode"] == "SIMULATION"
    assert answer["decision"] == (answer["confidence"] > 0.78)
    assert answer["model_version"] == "1.0.0" and answer["inference_time_ms"] > 0
    status = client.get("/status").json()
    assert status["ai_engine"] == "online" and status["model_type"] == "xgboost"
    assert status["redis_connected"] is False
    assert status["total_requests"] == before + 1
    summary = client.get("/metrics_summary").json()
    assert summary["last_confidence"] == pytest.approx(answer["confidence"])
    metrics = client.get("/metrics").text
    assert f"ai_prediction_confidence {answer['confidence']}" in metrics
    assert "ai_inference_latency_ms_count" in metrics and "ai_requests_total" in metrics
    short = client.post("/predict", json={"features": [1, 2, 3]})
    assert short.status_code == 422 and "exactly 8 numbers" in short.text
    live, _ = worker_state(registry, live_trading=True)
    assert serve(live).get("/status").json()["mode"] == "LIVE"


def test_a_page_rebinding_its_name_to_loopback_is_refused(registry: Registry) -> None:
    state, _ = worker_state(registry)
    client = TestClient(create_api(state), base_url="http://attacker.example")
    assert client.get("/").status_code == 400
    assert serve(state).get("/").json()["status"] == "ok"


def test_openapi_lists_every_route_with_its_schema(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    routes = {
        ("post", "/predict/batch"),
        ("post", "/predict/single"),
        ("post", "/predict"),
        ("get", "/models/summary"),
        ("post", "/models/register"),
        ("post", "/models/ab-test"),
        ("post", "/models/promote-winner"),
        ("get", "/"),
        ("get", "/health"),
        ("get", "/status"),
        ("get", "/metrics_summary"),
        ("get", "/metrics"),
    }
    listed = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert routes <= listed
    for method, path in routes:
        operation = document["paths"][path][method]
        if method == "post":
            assert operation["requestBody"]["content"]["application/json"]["schema"]
        if path != "/metrics":  # Prometheus' text format
            assert operation["responses"]["200"]["content"]["application/json"]["schema"]
    refs = json.dumps(document).count("#/components/schemas/")
    assert (
        refs and {"BatchRequest", "ScoredOpportunity"} <= document["components"]["schemas"].keys()
    )
    assert client.get("/docs").status_code == 200


def _json(event: Any) -> str:
    from apex_stream.events import encode

    return encode(event).decode()


def request_seconds(client: TestClient) -> dict[tuple[str, str], float]:
    """``apex_api_request_seconds`` samples from /metrics by (sample name, route)."""
    families = text_string_to_metric_families(client.get("/metrics").text)
    return {
        (sample.name, sample.labels["route"]): sample.value
        for family in families
        if family.name == "apex_api_request_seconds"
        for sample in family.samples
        if "le" not in sample.labels
    }


def test_request_latencies_are_on_metrics_by_route_template(client: TestClient) -> None:
    before = request_seconds(client)
    o = json.loads(_json(opportunity(1, "r1", ["A", "B"])))
    single = client.post("/predict/single", json=o)
    assert single.status_code == 200, single.text
    assert client.get("/no/such/path").status_code == 404
    after = request_seconds(client)
    for route in ("/predict/single", "unmatched"):
        count = ("apex_api_request_seconds_count", route)
        assert after[count] == before.get(count, 0) + 1
        took = ("apex_api_request_seconds_sum", route)
        assert after[took] > before.get(took, 0)
    assert not any("/no/such" in route for _, route in after)  # raw paths make no series


def test_health_reasons_name_each_way_a_worker_is_degraded(registry: Registry) -> None:
    onnx = registry.active("onnx")
    (registry.folder / str(onnx.path)).write_bytes(b"corrupted")
    settings = Settings(models_dir=registry.folder)
    healthy = Ensemble(Settings())
    failures = Failures()
    assert health_reasons(healthy, failures, Registry(ROOT / "models"), None, 60.0) == []

    degraded = Ensemble(settings)
    failures.report({"xgboost@1.0.0": "RuntimeError: boom"}, "score", now=time.time() - 5)
    failures.report({"online@1.0.0": "RuntimeError: long ago"}, "score", now=time.time() - 600)
    failures.refuse(degraded.revision + 1, degraded.revision, "xgboost@1.1.0 did not load")
    registry.add([replace(registry.active("xgboost"), metrics={"bumped": 1.0})])  # a revision
    lag = "consumer lag grew from 1,200 to 45,000 records over 30 s on opportunities"
    reasons = health_reasons(degraded, failures, registry, lag, 60.0)
    assert reasons[0].startswith("onnx@1.0.0 did not load: ModelError: checksum mismatch")
    assert re.fullmatch(r"xgboost@1\.0\.0 failed to score \d s ago: RuntimeError: boom", reasons[1])
    assert reasons[2:] == [
        f"manifest revision {degraded.revision + 1} refused: xgboost@1.1.0 did not load",
        f"serving manifest revision {degraded.revision}, {degraded.revision + 1} exists",
        lag,
    ]
    (registry.folder / "manifest.json").write_text("{}")
    [unreadable] = health_reasons(healthy, Failures(), registry, None, 60.0)
    assert unreadable.startswith("the manifest cannot be read: KeyError")


def test_a_failing_member_leaves_the_api_scoring_and_is_reported(registry: Registry) -> None:
    class Raises:
        name, version, provider = "xgboost", "1.0.0", "cpu"

        def predict(self, X: np.ndarray) -> np.ndarray:
            raise RuntimeError("device lost")

    state, published = worker_state(registry)
    ensemble = state.scorer.ensemble
    ensemble.arms["xgboost"] = replace(ensemble.arms["xgboost"], models=(Raises(),))
    client = serve(state)
    batch = [json.loads(_json(opportunity(i, f"r{i}", ["WETH", "USDC"]))) for i in range(3)]
    response = client.post("/predict/batch", json=batch)
    assert response.status_code == 200
    for row in response.json()["predictions"]:
        assert row["voters"] == ["onnx", "online"] and row["model_version_xgb"] is None
    assert published == [
        "xgboost@1.0.0 failed to score and is left out of the vote: RuntimeError: device lost"
    ]


def test_promote_winner_judges_profit_under_the_expected_profit_rule(
    registry: Registry, tmp_path: Path
) -> None:
    """The book executes what the rule executes and the test compares profit per opportunity:
    a candidate with the lower win rate but the higher profit wins."""
    state, _ = worker_state(registry, decision_rule="expected_profit")
    client = serve(state)
    model = tmp_path / "xgboost.ubj"
    shutil.copyfile(registry.folder / "xgboost-1.0.0.ubj", model)
    client.post(
        "/models/register",
        json={"model_type": "xgboost", "model_path": str(model), "version": "1.1.0"},
    ).raise_for_status()
    split = {"version_a": "1.0.0", "version_b": "1.1.0", "traffic_split": [0.5, 0.5]}
    client.post("/models/ab-test", json={"model_type": "xgboost", **split}).raise_for_status()
    # every row quotes 20 USD of net profit for 1 USD of gas on 1,000 USD: at score 0.6 the
    # expected profit is 11.6 USD, so the rule executes all 1,000 rows of each version
    X = np.zeros((1_000, len(FEATURES)), dtype=np.float32)
    X[:, FEATURES.index("input_amount_thousands")] = 1.0
    X[:, FEATURES.index("profit_usd")] = 20.0
    X[:, FEATURES.index("profit_ratio")] = 1.021
    book, scores, latency = state.learning.book, np.full(1_000, 0.6), np.zeros(1_000)
    # 1.0.0: 800 wins of 5 USD, 200 reverts of 1 USD; 1.1.0: 500 wins of 30 USD
    for version, wins, gain in (("1.0.0", 800, 5.0), ("1.1.0", 500, 30.0)):
        success = np.arange(1_000) < wins
        book.update("xgboost", version, scores, success, np.where(success, gain, -1.0), latency, X)
    summary = client.get("/models/summary").json()["performance"]
    assert summary["xgboost@1.0.0"]["executed"] == summary["xgboost@1.1.0"]["executed"] == 1_000
    assert summary["xgboost@1.0.0"]["precision"] == 0.8 > summary["xgboost@1.1.0"]["precision"]
    assert summary["xgboost@1.1.0"]["profit_per_opportunity_usd"] == pytest.approx(14.5)
    response = client.post("/models/promote-winner", json={"model_type": "xgboost"})
    assert response.status_code == 200, response.text
    assert response.json()["action"] == "promote" and response.json()["z"] > 0
    assert registry.active("xgboost").version == "1.1.0"
