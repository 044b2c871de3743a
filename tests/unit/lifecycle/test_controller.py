"""The lifecycle controller's figures of an A/B arm, the refitted meta-learner following its
members' A/B decision, and a failed retrain raising an alert."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from types import SimpleNamespace

import pytest

from apex_stream.events import Event
from apex_stream.inference.registry import Registry
from apex_stream.lifecycle import controller as lifecycle
from apex_stream.lifecycle.abtest import Arm, Decision
from apex_stream.lifecycle.controller import ArmFigures, Controller
from apex_stream.settings import Settings


def test_arm_figures_summarise_an_arm() -> None:
    arm = ArmFigures()
    row = SimpleNamespace(
        outcomes=100,
        trades=40,
        wins=30,
        successes=50,
        rejected_failures=40,
        profit=1234.5,
        profit_sq=50_000.0,
        latency_ms=700.0,
    )
    arm.add(row)
    arm.add(row)
    summary = arm.summary()
    assert summary["outcomes"] == 200 and summary["trades"] == 80
    assert summary["win_rate"] == 0.75  # wins / trades
    assert summary["accuracy"] == 0.7  # (wins + rejected failures) / outcomes
    assert summary["recall"] == 0.6  # wins / successes
    assert summary["realized_profit_usd"] == 2469.0
    assert summary["latency_ms_mean"] == 7.0
    assert ArmFigures().summary()["win_rate"] == 0.0
    # the A/B test's arm carries what both comparisons need
    assert arm.arm("xgboost@1.1.0") == Arm("xgboost@1.1.0", 60, 80, 200, 2469.0, 100_000.0)


def with_stacking_candidates(registry: Registry) -> Controller:
    """The shipped models with stacking 1.1.0 (refitted with tested 1.1.0 members) and 1.3.0
    (of some other retrain) registered as candidates."""
    stacking = registry.active("stacking")
    registry.add(
        [replace(stacking, version=v, status="candidate", traffic=0.0) for v in ("1.1.0", "1.3.0")]
    )
    return Controller(Settings(models_dir=registry.folder))


def test_the_refitted_stacking_serves_when_its_members_are_promoted(registry: Registry) -> None:
    with_stacking_candidates(registry).settle_stacking(True, {"1.1.0"})
    assert registry.active("stacking").version == "1.1.0"
    assert registry.get("stacking", "1.0.0").status == "archived"
    assert registry.get("stacking", "1.3.0").status == "candidate"


def test_the_refitted_stacking_is_archived_when_its_members_are_rolled_back(
    registry: Registry,
) -> None:
    with_stacking_candidates(registry).settle_stacking(False, {"1.1.0"})
    assert registry.active("stacking").version == "1.0.0"
    assert registry.get("stacking", "1.1.0").status == "archived"
    assert registry.get("stacking", "1.3.0").status == "candidate"


def test_a_won_test_whose_candidate_file_broke_is_rolled_back_all_or_nothing(
    registry: Registry,
) -> None:
    controller = with_stacking_candidates(registry)
    for member in ("xgboost", "onnx"):
        active = registry.active(member)
        registry.register(member, "1.1.0", registry.folder / str(active.path), created="x")
        registry.split(member, {"1.0.0": 0.8, "1.1.0": 0.2})
    (registry.folder / "onnx-1.1.0.onnx").write_bytes(b"broken after registration")
    won = Decision("promote", 3.1, 0.001, "candidate wins")
    applied = controller.apply(won, ["onnx", "xgboost"], ("1.1.0", "1.1.0"))
    assert applied.action == "rollback"
    assert "cannot be promoted: checksum mismatch for onnx@1.1.0" in applied.reason
    for member in ("xgboost", "onnx"):  # neither promoted, both candidates archived
        assert registry.active(member).version == "1.0.0"
        assert registry.get(member, "1.1.0").status == "archived"
    assert registry.active("stacking").version == "1.0.0"


async def test_a_failed_retrain_raises_a_critical_alert_and_waits_for_new_outcomes(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(models_dir=registry.folder, retrain_min_interval_s=0)
    controller = Controller(settings)
    counted_from: list[object] = []
    sent: list[Event] = []

    def labelled_since(since: object) -> int:
        counted_from.append(since)
        return settings.retrain_min_samples

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("training data has NaN labels")

    async def send(events: list[Event]) -> None:
        sent.extend(events)

    monkeypatch.setattr(controller, "labelled_since", labelled_since)
    monkeypatch.setattr(controller, "send", send)
    monkeypatch.setattr(lifecycle, "retrain", broken)
    manifest = registry.manifest()
    await controller.maybe_retrain(manifest)

    (alert,) = sent
    assert (alert.kind, alert.severity) == ("retrain.failed", "critical")
    assert "ValueError: training data has NaN labels" in alert.message
    assert alert.data["error"] == "ValueError"
    assert registry.manifest() == manifest  # nothing registered, no traffic changed
    # the next look counts new outcomes from the failure, not from the newest version
    failed_at = controller.failed_at
    newest = datetime.fromisoformat(manifest.active("xgboost").created)
    assert failed_at is not None and counted_from == [newest]
    await controller.maybe_retrain(manifest)
    assert counted_from[-1] == failed_at
