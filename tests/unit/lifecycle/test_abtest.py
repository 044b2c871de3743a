"""Model lifecycle logic: sticky A/B assignment, the significance test and decisions, and the
manifest's validation and operations."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xgboost as xgb

from apex_stream.features import FEATURES, impute
from apex_stream.inference.ensemble import Ensemble
from apex_stream.inference.registry import ModelError, Registry, validate
from apex_stream.inference.routes import assign
from apex_stream.lifecycle.abtest import Arm, decide, sequential_p, two_proportion_z
from apex_stream.lifecycle.controller import ArmFigures
from apex_stream.settings import ROOT, Settings
from apex_stream.training.retrain import next_version

MODELS = ROOT / "models"


def test_assignment_is_sticky_and_follows_the_split() -> None:
    routes = [f"route-{i}" for i in range(20_000)]
    arms = assign(routes, [0.8, 0.2])
    assert abs((arms == 1).mean() - 0.2) < 0.01  # binomial sd ~0.003
    again = assign(list(reversed(routes)), [0.8, 0.2])[::-1]
    assert np.array_equal(arms, again)  # a route's arm depends on the route only
    three = assign(routes, [0.5, 0.3, 0.2])
    assert np.allclose(np.bincount(three) / len(routes), [0.5, 0.3, 0.2], atol=0.012)
    assert set(assign(routes[:100], [1.0])) == {0}
    with pytest.raises(ValueError, match="must sum to 1"):
        assign(routes, [0.8, 0.3])


def test_two_proportion_z_matches_a_hand_computed_case() -> None:
    # 50/100 vs 65/100: pooled 0.575, se = sqrt(0.575 * 0.425 * (1/100 + 1/100)) = 0.069911
    z, se = two_proportion_z(Arm("a", 50, 100), Arm("b", 65, 100))
    assert se == pytest.approx(0.069911, rel=1e-4)
    assert z == pytest.approx(0.15 / 0.069911, rel=1e-4)
    z_back, se_back = two_proportion_z(Arm("b", 65, 100), Arm("a", 50, 100))
    assert z_back == pytest.approx(-z) and se_back == se
    assert two_proportion_z(Arm("a", 0, 0), Arm("b", 5, 10)) == (0.0, 0.0)
    assert two_proportion_z(Arm("a", 10, 10), Arm("b", 10, 10)) == (0.0, 0.0)


def test_sequential_p_matches_a_hand_computed_case() -> None:
    # se 0.02, tau 0.05: s2 = 0.0004, t2 = 0.0025; z = 4:
    # log L = 0.5 ln(0.0004 / 0.0029) + 16 * 0.0025 / (2 * 0.0029) = -0.99050 + 6.89655
    assert sequential_p(4.0, 0.02, 0.05) == pytest.approx(math.exp(-5.90605), rel=1e-4)
    assert sequential_p(-4.0, 0.02, 0.05) == sequential_p(4.0, 0.02, 0.05)  # two-sided
    assert sequential_p(0.5, 0.02, 0.05) == 1.0  # ratio below 1
    assert sequential_p(3.0, 0.0, 0.05) == 1.0


def looks(rate_a: float, rate_b: float, runs: int, seed: int) -> tuple[np.ndarray, ...]:
    """``runs`` simulated A/B tests on an 80/20 split, looked at every 25 candidate trades from
    100 to 2,000: each look's wins and trades per arm (runs x looks arrays)."""
    rng = np.random.default_rng(seed)
    n_b = np.arange(100, 2_001, 25)
    n_a = 4 * n_b
    wins_a = np.cumsum(rng.random((runs, n_a[-1])) < rate_a, axis=1)[:, n_a - 1]
    wins_b = np.cumsum(rng.random((runs, n_b[-1])) < rate_b, axis=1)[:, n_b - 1]
    return wins_a, n_a, wins_b, n_b


def ever_significant(rate_a: float, rate_b: float, alpha: float, sequential: bool) -> float:
    """Share of simulated tests whose p fell below ``alpha`` at some look."""
    wins_a, n_a, wins_b, n_b = looks(rate_a, rate_b, runs=1_000, seed=7)
    hits = 0
    for run in range(len(wins_a)):
        for look in range(len(n_a)):
            a, b = Arm("a", wins_a[run, look], n_a[look]), Arm("b", wins_b[run, look], n_b[look])
            z, se = two_proportion_z(a, b)
            p = sequential_p(z, se, 0.05) if sequential else math.erfc(abs(z) / math.sqrt(2))
            if p < alpha:
                hits += 1
                break
    return hits / len(wins_a)


def test_repeated_looks_keep_the_false_positive_rate_within_alpha() -> None:
    # the same win rate in both arms, looked at 77 times: a fixed-sample z-test finds a
    # "difference" in far more than 5% of the tests, the sequential p in fewer
    assert ever_significant(0.6, 0.6, 0.05, sequential=False) > 0.2
    assert ever_significant(0.6, 0.6, 0.05, sequential=True) <= 0.05
    # and a real difference of 0.1 is still found, nearly always, within 2,000 trades
    assert ever_significant(0.6, 0.7, 0.01, sequential=True) > 0.95


@pytest.mark.parametrize(
    ("control", "candidate", "action"),
    [
        (Arm("1.0.0", 500, 1000), Arm("1.1.0", 600, 1000), "promote"),  # z = 4.5, p = 1.3e-4
        (Arm("1.0.0", 600, 1000), Arm("1.1.0", 500, 1000), "rollback"),
        # z = 3.6 would pass a fixed-sample test at 0.01 (p = 3e-4), not the sequential one
        (Arm("1.0.0", 500, 1000), Arm("1.1.0", 580, 1000), "continue"),
        (Arm("1.0.0", 500, 1000), Arm("1.1.0", 510, 1000), "continue"),
        (Arm("1.0.0", 50, 100), Arm("1.1.0", 90, 100), "continue"),  # too few samples
    ],
)
def test_decisions(control: Arm, candidate: Arm, action: str) -> None:
    decision = decide(control, candidate, min_samples=200, alpha=0.01, effect_sd=0.05)
    assert decision.action == action
    assert "win rate 1.1.0" in decision.reason


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    shutil.copytree(MODELS, tmp_path / "models")
    return Registry(tmp_path / "models")


def test_the_shipped_manifest_is_valid_and_bad_ones_say_why(registry: Registry) -> None:
    entries = registry.entries()
    validate(entries)
    xgb = next(e for e in entries if e.name == "xgboost")
    cases = {
        "version must be semantic": [
            *entries,
            replace(xgb, version="v2", status="candidate", traffic=0.0),
        ],
        "must sum to 1": [replace(e, traffic=0.7) if e is xgb else e for e in entries],
        "2 active versions": [*entries, replace(xgb, version="1.1.0")],
        "feature-list mismatch": [
            replace(e, feature_version="0.9") if e is xgb else e for e in entries
        ],
        "archived but has traffic": [
            *entries,
            replace(xgb, version="0.9.0", status="archived", traffic=0.5),
        ],
        "listed twice": [*entries, xgb],
    }
    for reason, bad in cases.items():
        with pytest.raises(ModelError, match=reason):
            validate(bad)


def test_register_ab_test_promote_and_rollback(registry: Registry) -> None:
    file = registry.folder / "xgboost-1.0.0.ubj"
    entry = registry.register("xgboost", "1.1.0", file, created="2026-11-21T00:00:00+00:00")
    assert (entry.status, entry.traffic) == ("candidate", 0.0)
    assert (registry.folder / "xgboost-1.1.0.ubj").read_bytes() == file.read_bytes()
    with pytest.raises(ModelError, match="already registered"):
        registry.register("xgboost", "1.1.0", file, created="x")
    with pytest.raises(ModelError, match="feature-list mismatch"):
        registry.register("xgboost", "1.2.0", file, feature_version="0.1", created="x")
    assert not (registry.folder / "xgboost-1.2.0.ubj").exists()

    with pytest.raises(ModelError, match="sum to 1.1"):
        registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.3})
    with pytest.raises(ModelError, match="unknown version xgboost@2.0.0"):
        registry.split("xgboost", {"1.0.0": 0.8, "2.0.0": 0.2})
    with pytest.raises(ModelError, match="must include the active"):
        registry.split("xgboost", {"1.1.0": 1.0})
    registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.2})
    assert [(e.version, e.traffic) for e in registry.manifest().serving("xgboost")] == [
        ("1.0.0", 0.8),
        ("1.1.0", 0.2),
    ]

    assert registry.rollback("xgboost").version == "1.0.0"  # the test is stopped
    assert registry.get("xgboost", "1.1.0").status == "archived"
    with pytest.raises(ModelError, match="nothing to roll back to"):
        registry.rollback("xgboost")

    registry.register("xgboost", "1.2.0", file, created="x")
    promoted = registry.promote("xgboost", "1.2.0")
    assert (promoted.status, promoted.traffic) == ("active", 1.0)
    assert registry.get("xgboost", "1.0.0").status == "archived"
    assert registry.rollback("xgboost").version == "1.0.0"  # the version 1.2.0 replaced
    assert registry.get("xgboost", "1.2.0").status == "archived"
    raw = json.loads(registry.path.read_text())
    validate(registry.entries())
    assert [m["version"] for m in raw["models"] if m["name"] == "xgboost"] == [
        "1.0.0",
        "1.1.0",
        "1.2.0",
    ]


def test_an_ab_test_scores_each_route_with_its_version(registry: Registry) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4_000, len(FEATURES)))
    candidate = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(X, label=X[:, 0] > 0),
        num_boost_round=5,
    )
    file = registry.folder / "candidate.ubj"
    candidate.save_model(file)
    registry.register("xgboost", "1.1.0", file, created="2026-11-21T00:00:00+00:00")
    registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.2})
    settings = Settings(models_dir=registry.folder)
    ensemble = Ensemble(settings)
    assert ensemble.traffic["xgboost"] == {"1.0.0": 0.8, "1.1.0": 0.2}
    assert ensemble.revision == registry.manifest().revision == 2  # register, split

    routes = [f"route-{i % 1500}" for i in range(len(X))]
    scores = ensemble.score(X, routes)
    on_candidate = assign(routes, [0.8, 0.2]) == 1
    assert 0.15 < on_candidate.mean() < 0.25
    versions = [v["xgboost"] for v in scores.version_rows]
    assert versions == ["1.1.0" if c else "1.0.0" for c in on_candidate]
    assert {v["onnx"] for v in scores.version_rows} == {"1.0.0"}
    (active, new) = ensemble.arms["xgboost"].models
    means = ensemble.means["xgboost"]
    expected = np.where(
        on_candidate, new.predict(impute(X, means)), active.predict(impute(X, means))
    )
    np.testing.assert_allclose(scores.members["xgboost"], expected, rtol=0, atol=1e-7)
    # a route keeps its version across batches; without routes the active version scores all
    again = ensemble.score(X[:100], routes[:100])
    assert [v["xgboost"] for v in again.version_rows] == versions[:100]
    assert ensemble.score(X[:10]).versions["xgboost"] == "1.0.0"

    # a promotion is a new revision that reuses the loaded candidate
    registry.promote("xgboost", "1.1.0")
    promoted = Ensemble(settings, registry.manifest(), previous=ensemble)
    assert promoted.versions["xgboost"] == "1.1.0" and promoted.xgboost is new
    assert promoted.online is ensemble.online  # the live learner keeps learning


def test_arm_figures_summarise_an_arm() -> None:
    arm = ArmFigures()
    row = SimpleNamespace(
        outcomes=100,
        trades=40,
        wins=30,
        successes=50,
        rejected_failures=40,
        profit=1234.5,
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


def test_retrained_versions_take_the_next_minor_version(registry: Registry) -> None:
    assert next_version(registry) == "1.1.0"
    file = registry.folder / "xgboost-1.0.0.ubj"
    registry.register("onnx", "1.3.2", registry.folder / "onnx-1.0.0.onnx", created="x")
    registry.register("xgboost", "1.1.0", file, created="x")
    assert next_version(registry) == "1.4.0"
    assert registry.manifest().testing() == []
    registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.2})
    (testing,) = registry.manifest().testing()
    assert testing.key == "xgboost@1.1.0" and testing.testing_since is not None
    registry.promote("xgboost", "1.1.0")
    assert registry.get("xgboost", "1.1.0").testing_since is None
