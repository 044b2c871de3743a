"""The drift and health monitor: ADWIN alerts within a bounded number of outcomes after a
shift, none on a stationary stream; threshold alerts; the metrics message; cooldown."""

from __future__ import annotations

import numpy as np

from apex_stream.features import FEATURES
from apex_stream.inference.members import MEMBERS
from apex_stream.learning.join import Joined
from apex_stream.learning.monitor import Monitor
from apex_stream.settings import Settings

WATCHED = FEATURES.index("gas_millions")


def batch(rng: np.random.Generator, n: int, gas: float, error: float) -> Joined:
    """Joined outcomes whose members are right with probability ``1 - error``."""
    X = rng.normal(1.0, 0.1, size=(n, len(FEATURES)))
    X[:, WATCHED] = rng.normal(gas, 0.05, size=n)
    y = rng.random(n) < 0.5
    wrong = rng.random(n) < error
    online = np.where(y != wrong, 0.8, 0.2)
    return Joined(
        [f"o{i}" for i in range(n)],
        X.astype(np.float32),
        np.column_stack([online] * len(MEMBERS)),
        np.full((n, len(MEMBERS)), "1.0.0", object),
        np.zeros(n),
        y,
        np.zeros(n),
    )


def test_feature_and_error_drift_alert_soon_after_a_shift_and_not_before() -> None:
    monitor = Monitor(Settings(alert_cooldown_s=0), source="test")
    rng = np.random.default_rng(0)
    quiet = [a for _ in range(20) for a in monitor.learned(batch(rng, 250, 0.2, 0.2))]
    assert quiet == []  # 5,000 stationary outcomes: no alert
    alerts, seen = [], 0
    while not {"drift.feature.gas_millions", "drift.error"} <= {a.kind for a in alerts}:
        alerts += monitor.learned(batch(rng, 50, 0.35, 0.45))
        seen += 50
        assert seen <= 1000, [a.kind for a in alerts]  # bounded detection delay
    error = next(a for a in alerts if a.kind == "drift.error")
    assert error.severity == "critical" and error.model_version == "online@1.0.0"
    assert error.data["after"] > error.data["before"]
    feature = next(a for a in alerts if a.kind == "drift.feature.gas_millions")
    assert feature.data["after"] > feature.data["before"] and "ADWIN" in feature.message


def test_threshold_alerts_and_the_metrics_message() -> None:
    settings = Settings(
        alert_min_samples=100,
        alert_min_accuracy=0.7,
        alert_latency_p99_ms=50,
        alert_dead_letter_rate=0.05,
        alert_cooldown_s=60,
    )
    monitor = Monitor(settings, source="w1")
    rng = np.random.default_rng(1)
    monitor.learned(batch(rng, 300, 0.2, 0.4))  # accuracy ~0.6
    monitor.scored(np.r_[np.full(980, 5.0), np.full(20, 120.0)], executed=400)
    monitor.dead_lettered(100)
    kinds = {a.kind: a for a in monitor.health()}
    assert set(kinds) == {
        "accuracy.online@1.0.0",
        "accuracy.onnx@1.0.0",
        "accuracy.xgboost@1.0.0",
        "latency",
        "dead_letters",
    }
    assert kinds["accuracy.online@1.0.0"].severity == "critical"
    assert kinds["latency"].data["p99_ms"] > 50
    assert kinds["dead_letters"].data == {"dead": 100, "seen": 1100, "source": "w1"}
    assert monitor.health() == []  # cooldown: each subject alerts once per minute
    metric = monitor.metric()
    assert metric.source == "w1" and metric.values["scored"] == 1000
    assert metric.values["executed"] == 400 and metric.values["latency_p50_ms"] == 5.0
    assert 0.5 < metric.values["accuracy.online@1.0.0"] < 0.7
    assert monitor.metric().values["scored"] == 0  # per period
