"""What failed in a worker's ensemble, told once to operators and kept for ``/health``.

A member version that did not load stays unavailable until a reload replaces it; one that
fails while scoring may fail every batch: each failure is counted in
``apex_member_failures_total``, but alerted at most once per ``holdoff_s`` per version
(``APEX_ALERT_COOLDOWN_S``), so a failing member sends one alert a minute, not one per
micro-batch.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from ..events import Alert
from ..metrics import MEMBER_FAILURES

Stage = Literal["load", "score"]


def _alert(key: str, stage: Stage, reason: str) -> Alert:
    did = "did not load" if stage == "load" else "failed to score"
    return Alert(
        alert_id=uuid.uuid4().hex,
        kind="member.failed",
        severity="critical" if stage == "load" else "warning",
        message=f"{key} {did} and is left out of the vote: {reason}",
        data={"member": key.split("@")[0], "model": key, "stage": stage, "reason": reason},
        model_version=key.split("@")[-1],
    )


class Failures:
    """The latest failure of each member version, and when it was last alerted."""

    def __init__(self, holdoff_s: float = 60.0) -> None:
        self.holdoff_s = holdoff_s
        #: ``member@version`` -> (when, stage, why) of its latest failure
        self.latest: dict[str, tuple[float, Stage, str]] = {}
        self._alerted: dict[str, float] = {}
        #: the newest manifest revision a live reload refused, and why (None: none since the
        #: revision served)
        self.refused: tuple[int, str] | None = None

    def report(
        self, failures: dict[str, str], stage: Stage, now: float | None = None
    ) -> list[Alert]:
        """Record a batch's (or a load's) failures; the alerts that are due."""
        now = time.time() if now is None else now
        alerts = []
        for key, reason in failures.items():
            MEMBER_FAILURES.labels(key.split("@")[0], stage).inc()
            self.latest[key] = (now, stage, reason)
            if now - self._alerted.get(key, -self.holdoff_s) >= self.holdoff_s:
                self._alerted[key] = now
                alerts.append(_alert(key, stage, reason))
        return alerts

    def refuse(self, revision: int, serving: int, reason: str) -> Alert:
        """A live reload refused ``revision``: the worker goes on serving ``serving``."""
        self.refused = (revision, reason)
        return Alert(
            alert_id=uuid.uuid4().hex,
            kind="model.reload-refused",
            severity="critical",
            message=(
                f"manifest revision {revision} refused, still serving revision {serving}: {reason}"
            ),
            data={"revision": revision, "serving": serving, "reason": reason},
        )

    def recent(self, within_s: float, now: float | None = None) -> list[str]:
        """Why the ensemble is degraded: each version that failed to score within the last
        ``within_s`` seconds (versions that did not load are the ensemble's to say)."""
        now = time.time() if now is None else now
        return [
            f"{key} failed to score {now - at:.0f} s ago: {reason}"
            for key, (at, stage, reason) in sorted(self.latest.items())
            if stage == "score" and now - at <= within_s
        ]
