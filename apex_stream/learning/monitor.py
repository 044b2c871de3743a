"""Drift and health watch of a worker.

- Feature drift: river's ADWIN on key features as the opportunities were scored (joined with
  their outcomes). ADWIN's bound assumes values in [0, 1], so each feature is standardised with
  the mean and spread of its first ``reference`` values, clipped to ±5 sd and mapped to [0, 1].
- Error drift: ADWIN on the online learner's 0/1 error at the decision threshold.
- Each ADWIN sees the means of consecutive chunks of ``DRIFT_CHUNK`` outcomes (:class:`Drift`):
  a mean shift shows in the chunk means as in the values, with 1/16 of the per-value updates
  (river's ADWIN takes one value per call).
- Thresholds: rolling accuracy of every member version, prediction latency p99, dead-letter
  rate.

Findings become :class:`Alert` events with severity, figures and the affected model version,
at most one per subject every ``cooldown_s``; :meth:`Monitor.metric` summarises the worker for
the dashboard's metrics channel.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
from river.drift import ADWIN

from ..events import Alert, Metric, Severity
from ..features import FEATURES
from ..inference.members import MEMBERS
from ..settings import Settings
from .join import Joined

#: Outcomes averaged into one ADWIN update.
DRIFT_CHUNK = 16


class Drift:
    """ADWIN over the means of consecutive chunks of values (a partial chunk waits for the next
    batch)."""

    def __init__(self, delta: float, chunk: int = DRIFT_CHUNK) -> None:
        # a check for a cut every 2 updates (river's default is 32): every 32 outcomes
        self.adwin = ADWIN(delta=delta, clock=2)
        self.chunk = chunk
        self._carry = np.empty(0)

    @property
    def estimation(self) -> float:
        return float(self.adwin.estimation)

    @property
    def width(self) -> float:
        return float(self.adwin.width)

    def update(self, values: np.ndarray) -> list[tuple[float, float]]:
        """Add values in order; returns (mean before, mean after) for each change detected."""
        values = np.concatenate([self._carry, values])
        whole = len(values) - len(values) % self.chunk
        self._carry = values[whole:]
        changes = []
        before = self.estimation
        for mean in values[:whole].reshape(-1, self.chunk).mean(axis=1).tolist():
            self.adwin.update(mean)
            if self.adwin.drift_detected:
                changes.append((before, self.estimation))
                before = self.estimation
        return changes


class Monitor:
    """Detectors and thresholds over what a worker scores and learns."""

    def __init__(self, settings: Settings, source: str, reference: int = 1000) -> None:
        self.settings = settings
        self.source = source
        self.reference = reference
        self.watched = [FEATURES.index(f) for f in settings.monitor_features]
        self.feature_drift = {i: Drift(settings.drift_delta) for i in self.watched}
        self.error_drift = Drift(settings.drift_delta)
        self._reference_rows: list[np.ndarray] = []
        self._centre: np.ndarray | None = None
        self._spread: np.ndarray | None = None
        self._correct: dict[str, np.ndarray] = {}
        self._latency_ms = np.empty(0)
        self._scored = self._executed = self._dead = 0
        self._last_alert: dict[str, float] = {}

    # -- observations ------------------------------------------------------------------------

    def scored(self, latency_ms: np.ndarray, executed: int) -> None:
        """A scored batch: its latencies and how many were executed."""
        self._latency_ms = np.concatenate([self._latency_ms, latency_ms])[-10_000:]
        self._scored += len(latency_ms)
        self._executed += executed

    def dead_lettered(self, count: int) -> None:
        self._dead += count

    def learned(self, joined: Joined) -> list[Alert]:
        """Outcomes joined with their features and member scores; returns drift alerts."""
        if not len(joined):
            return []
        alerts = self._feature_drift(joined.X.astype(np.float64))
        threshold = self.settings.threshold
        y = joined.success
        online = MEMBERS.index("online")
        errors = (joined.scores[:, online] > threshold) != y
        online_version = str(joined.versions[-1, online])
        for before, after in self.error_drift.update(errors.astype(np.float64)):
            alerts += self._alert(
                "drift.error",
                "critical" if after > before else "info",
                f"online error rate moved from {before:.3f} to {after:.3f} (ADWIN)",
                {"before": before, "after": after, "window": self.error_drift.width},
                f"online@{online_version}",
            )
        for j, member in enumerate(MEMBERS):
            member_scores, versions = joined.scores[:, j], joined.versions[:, j]
            for version in set(versions.tolist()):
                mask = versions == version
                key = f"{member}@{version}"
                correct = (member_scores[mask] > threshold) == y[mask]
                window = np.concatenate([self._correct.get(key, np.empty(0)), correct])
                self._correct[key] = window[-self.settings.alert_window :]
        return alerts

    def _feature_drift(self, X: np.ndarray) -> list[Alert]:
        if self._centre is None:
            self._reference_rows.append(X[:, self.watched])
            rows = np.concatenate(self._reference_rows)
            if len(rows) < self.reference:
                return []
            self._centre = np.nanmedian(rows, axis=0)
            q75, q25 = np.nanpercentile(rows, [75, 25], axis=0)
            self._spread = np.where(q75 - q25 > 0, (q75 - q25) / 1.349, 1.0)
            self._reference_rows = []
            X = rows
        else:
            X = X[:, self.watched]
        unit = np.clip((X - self._centre) / self._spread, -5, 5) / 10 + 0.5
        unit = np.nan_to_num(unit, nan=0.5)
        alerts: list[Alert] = []
        for column, i in enumerate(self.watched):
            name = FEATURES[i]
            for before, after in self.feature_drift[i].update(unit[:, column]):
                alerts += self._alert(
                    f"drift.feature.{name}",
                    "warning",
                    f"{name} drifted: standardised mean {before:.3f} -> {after:.3f} (ADWIN)",
                    {"feature": name, "before": before, "after": after},
                    None,
                )
        return alerts

    # -- periodic checks ---------------------------------------------------------------------

    def health(self) -> list[Alert]:
        """Threshold alerts: accuracy, latency, dead-letter rate."""
        s = self.settings
        alerts: list[Alert] = []
        for key, window in self._correct.items():
            if len(window) >= s.alert_min_samples and window.mean() < s.alert_min_accuracy:
                alerts += self._alert(
                    f"accuracy.{key}",
                    "critical",
                    f"{key} accuracy {window.mean():.3f} over the last {len(window)} outcomes is "
                    f"below {s.alert_min_accuracy}",
                    {"accuracy": float(window.mean()), "samples": len(window)},
                    key,
                )
        if len(self._latency_ms):
            p99 = float(np.percentile(self._latency_ms, 99))
            if p99 > s.alert_latency_p99_ms:
                alerts += self._alert(
                    "latency",
                    "warning",
                    f"prediction latency p99 {p99:.1f} ms exceeds {s.alert_latency_p99_ms} ms",
                    {"p99_ms": p99, "budget_ms": s.alert_latency_p99_ms},
                    None,
                )
        seen = self._scored + self._dead
        if seen and self._dead / seen > s.alert_dead_letter_rate:
            alerts += self._alert(
                "dead_letters",
                "warning",
                f"{self._dead} of {seen} messages dead-lettered ({self._dead / seen:.1%})",
                {"dead": self._dead, "seen": seen},
                None,
            )
        return alerts

    def metric(self) -> Metric:
        """This period's figures (counters restart after each call)."""
        lat = self._latency_ms
        values: dict[str, float] = {
            "scored": float(self._scored),
            "executed": float(self._executed),
            "dead_letters": float(self._dead),
            "latency_p50_ms": float(np.percentile(lat, 50)) if len(lat) else 0.0,
            "latency_p99_ms": float(np.percentile(lat, 99)) if len(lat) else 0.0,
            "online_error_rate": float(self.error_drift.estimation),
        }
        values |= {f"accuracy.{k}": float(w.mean()) for k, w in self._correct.items() if len(w)}
        self._scored = self._executed = self._dead = 0
        self._latency_ms = np.empty(0)
        return Metric(source=self.source, values=values)

    def _alert(
        self,
        kind: str,
        severity: Severity,
        message: str,
        data: dict[str, Any],
        version: str | None,
    ) -> list[Alert]:
        now = time.monotonic()
        if now - self._last_alert.get(kind, -np.inf) < self.settings.alert_cooldown_s:
            return []
        self._last_alert[kind] = now
        return [
            Alert(
                alert_id=uuid.uuid4().hex,
                kind=kind[:64],
                severity=severity,
                message=message,
                data=data | {"source": self.source},
                model_version=version,
            )
        ]
