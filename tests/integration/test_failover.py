"""Drills on the real broker: a member's file corrupted under a running worker, and a manifest
revision whose new version does not load. Predictions keep flowing from the other members,
nothing is dead-lettered, an alert names what failed and /health says why it is degraded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from apex_stream.client import EventProducer
from apex_stream.events import Alert, Opportunity, Prediction, decode
from apex_stream.inference.control import publish
from apex_stream.inference.registry import Registry, now_iso
from apex_stream.settings import ROOT, Settings
from tests.integration.test_worker import create_topics, market
from tests.support.worker import collect, get, running_worker

pytestmark = pytest.mark.slow


async def scored(settings: Settings, batch: list[Opportunity], total: int) -> list[Prediction]:
    """The predictions of ``batch`` once the topic holds ``total`` (every batch so far)."""
    messages = await collect(settings, "predictions", total, timeout=120)
    ids = {o.opportunity_id for o in batch}
    found = [p for m in messages if (p := decode(m.value, Prediction)).opportunity_id in ids]
    assert {p.opportunity_id for p in found} == ids
    return found


async def send(settings: Settings, prices: list, opportunities: list[Opportunity]) -> None:
    async with EventProducer(settings) as producer:
        await producer.send_many(prices)
        await producer.send_many(opportunities)


async def alerts(settings: Settings, kind: str, want: int = 1) -> list[Alert]:
    for _ in range(20):
        found = [
            a
            for m in await collect(settings, "alerts", want, timeout=5)
            if (a := decode(m.value, Alert)).kind == kind
        ]
        if len(found) >= want:
            return found
    raise AssertionError(f"no {kind} alert")


async def test_a_corrupted_member_file_and_a_broken_revision_do_not_stop_scoring(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    await create_topics(settings)
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    registry = Registry(models)
    env = {"APEX_MODELS_DIR": str(models)}
    prices, opportunities, _ = market(3_000, seed=7)
    first, second, third = opportunities[:1000], opportunities[1000:2000], opportunities[2000:]
    port = free_port

    with running_worker(settings, port, tmp_path / "worker-1.log", env):
        await send(settings, prices, first)
        for p in await scored(settings, first, 1000):
            assert p.voters == ["xgboost", "onnx", "online"]
        # the onnx file is corrupted under the running worker: it serves from memory...
        onnx = registry.active("onnx")
        (models / str(onnx.path)).write_bytes(b"\x00" * 64)
        assert get(port, "/health")["status"] == "ok"

    # ...and the worker that starts next (a deploy, a crash) scores without it
    with running_worker(settings, port, tmp_path / "worker-2.log", env):
        await send(settings, [], second)
        for p in await scored(settings, second, 2000):
            assert p.voters == ["xgboost", "online"] and set(p.model_scores) == set(p.voters)
            assert p.strategy == "weighted"
        [failed] = await alerts(settings, "member.failed")
        assert failed.severity == "critical" and failed.data["member"] == "onnx"
        assert "onnx@1.0.0 did not load and is left out of the vote" in failed.message
        assert "checksum mismatch" in failed.message
        health = get(port, "/health")
        assert health["status"] == "degraded" and health["providers"]["onnx"] == "unavailable"
        assert any(r.startswith("onnx@1.0.0 did not load") for r in health["reasons"])
        serving = health["manifest_revision"]

        # a revision whose new xgboost version is corrupted after it was validated is refused
        xgb = registry.active("xgboost")
        registry.register("xgboost", "1.1.0", models / str(xgb.path), created=now_iso(), metrics={})
        registry.split("xgboost", {"1.0.0": 0.5, "1.1.0": 0.5})
        (models / "xgboost-1.1.0.ubj").write_bytes(b"{}")
        await publish(settings, registry.manifest(), "drill")
        [refused] = await alerts(settings, "model.reload-refused")
        assert refused.data["revision"] == registry.manifest().revision
        assert refused.data["serving"] == serving and "xgboost@1.1.0" in refused.message
        health = get(port, "/health")
        assert health["manifest_revision"] == serving
        assert health["traffic"]["xgboost"] == {"1.0.0": 1.0}
        assert any("refused" in r for r in health["reasons"])
        # and the stream goes on with the revision it serves
        await send(settings, [], third)
        for p in await scored(settings, third, 3000):
            assert p.model_versions == {"xgboost": "1.0.0", "online": "1.0.0"}

    dead = await collect(settings, "dead-letters", 1, timeout=3)
    assert dead == []
