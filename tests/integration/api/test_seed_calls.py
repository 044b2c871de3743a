"""The seeds' documented HTTP calls, run with curl against a real worker: seed 000's batch body
and model management (the registry edit reaches the worker through live reload), seed 002's
8-feature /predict, /status, /health and /metrics_summary; and /docs in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from apex_stream.api.schemas import Health, ModelsSummary
from apex_stream.settings import ROOT, Settings
from apex_stream.topics import TopicAdmin
from tests.support.seeds import SEED_000_BATCH, SEED_002_PREDICT
from tests.support.waiting import wait_for
from tests.support.worker import get, running_worker

pytestmark = pytest.mark.slow

SEED_000_BODY, SEED_002_BODY = SEED_000_BATCH.decode(), SEED_002_PREDICT.decode()


def curl(url: str, body: str | None = None) -> Any:
    """curl as the seeds write it (-X POST, a JSON Content-Type, -d BODY); the answer's JSON."""
    command = ["curl", "-sS", "--fail-with-body", url]
    if body is not None:
        command[1:1] = ["-X", "POST", "-H", "Content-Type: application/json", "-d", body]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return json.loads(done.stdout)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A copy of the shipped models for the worker (the test registers a version)."""
    shutil.copytree(ROOT / "models", tmp_path / "models")
    return tmp_path / "models"


async def test_seed_calls_with_curl_and_the_docs_in_a_browser(
    settings: Settings, tmp_path: Path, free_port: int, models: Path, browser: WebDriver
) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()
    port, base = free_port, f"http://localhost:{free_port}"
    env = {"APEX_MODELS_DIR": str(models), "AI_THRESHOLD": "0.78"}
    with running_worker(settings, port, tmp_path / "worker.log", env):
        # seed 000: the batch request as documented
        body = curl(f"{base}/predict/batch", SEED_000_BODY)
        [p] = body["predictions"]
        assert p["route_id"] == "usdc_usdt_2hop"
        assert 0 <= p["prediction_score"] <= 1
        assert p["should_execute"] == (p["prediction_score"] > 0.8)
        assert (body["total_opportunities"], body["threshold"]) == (1, 0.8)
        assert curl(f"{base}/")["status"] == "ok"

        # seed 000: model management, then the worker serves the split (live reload)
        file = tmp_path / "xgboost_v1.1.0.ubj"
        shutil.copyfile(models / "xgboost-1.0.0.ubj", file)
        register = {"model_type": "xgboost", "model_path": str(file), "version": "1.1.0"}
        assert curl(f"{base}/models/register", json.dumps(register))["published"]
        split = {"model_type": "xgboost", "version_a": "1.0.0", "version_b": "1.1.0"}
        assert curl(f"{base}/models/ab-test", json.dumps(split))["published"]
        await wait_for(
            lambda: get(port, "/health")["traffic"]["xgboost"] == {"1.0.0": 0.8, "1.1.0": 0.2},
            60,
            "the worker to serve the A/B split",
        )
        summary = curl(f"{base}/models/summary")
        assert {"model": "xgboost@1.1.0", "status": "candidate"}.items() <= next(
            m for m in summary["manifest"] if m["model"] == "xgboost@1.1.0"
        ).items()

        # seed 002: the 8-feature engine at the threshold its AI_THRESHOLD set
        answer = curl(f"{base}/predict", SEED_002_BODY)
        assert answer.keys() >= {"decision", "confidence", "threshold", "mode"}
        assert answer["threshold"] == 0.78 and answer["mode"] == "SIMULATION"
        assert answer["decision"] == (answer["confidence"] > 0.78)
        status = curl(f"{base}/status")
        assert status["ai_engine"] == "online" and status["total_requests"] == 1
        health = msgspec.convert(curl(f"{base}/health"), Health)  # as documented in OpenAPI
        assert health.status == "ok" and health.recovered
        msgspec.convert(curl(f"{base}/models/summary"), ModelsSummary)
        assert curl(f"{base}/metrics_summary")["total_requests"] == 1
        metrics = subprocess.run(
            ["curl", "-sS", f"{base}/metrics"], capture_output=True, text=True, check=True
        ).stdout
        for name in ("ai_prediction_confidence", "ai_inference_latency_ms", "ai_requests_total"):
            assert f"\n{name}" in metrics, name

        # the interactive documentation renders every route, offline
        document = curl(f"{base}/openapi.json")
        operations = sum(len(ops) for ops in document["paths"].values())
        browser.get(f"{base}/docs")
        WebDriverWait(browser, 30, 0.2).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == operations
        )
        summaries = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
        assert {"/predict/batch", "/predict", "/models/promote-winner"} <= {
            e.text.replace("\u200b", "") for e in summaries
        }
        assert browser.save_screenshot(str(tmp_path / "docs.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
