"""`apex-stream lifecycle`: the one process that decides A/B tests and schedules retraining.

Every ``lifecycle_interval_s`` it reads the manifest and the database the sink fills:

* **A test is running** (candidates with traffic): each arm's outcomes since the test began are
  counted from stored predictions (their ``decision``: the worker's rule) joined with their
  outcomes; :func:`decide` promotes the candidate, rolls it back, or lets the test go on,
  comparing win rates under the threshold rule and profit per opportunity under the
  expected-profit rule. A decision rewrites the manifest,
  publishes it to the workers and goes to the alerts topic with its numbers.
* **No test is running**: a retrain starts when ``retrain_min_samples`` new labelled
  predictions have arrived since the newest version was made, and either
  ``retrain_min_interval_s`` has passed or (``retrain_on_drift``) a drift alert came after it;
  after a drift, only the outcomes since the drift are trained on (the new regime). The new
  versions the retrain gate passes (not worse than the active ones on the held-out tail by more
  than ``retrain_auc_margin`` / ``retrain_logloss_margin``) enter an A/B test with
  ``retrain_candidate_traffic`` of the routes (alert ``retrain``); each one it refuses is kept as
  rejected (alert ``retrain.rejected``). A retrain that fails raises ``retrain.failed`` and is
  tried again after another ``retrain_min_samples`` outcomes. The stacking meta-learner
  refitted with the tested versions is promoted or archived with them.

It also publishes each step's arm figures as a ``lifecycle`` metrics message for dashboards.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, create_engine, text

from ..client import EventConsumer, EventProducer
from ..events import Alert, Event, Metric
from ..inference.control import publish
from ..inference.registry import Manifest, ModelEntry, ModelError, Registry
from ..settings import Settings
from ..training.retrain import STACKING, RetrainError, RetrainResult, retrain
from .abtest import Arm, Decision, decide

log = logging.getLogger("apex_stream.lifecycle")

ARMS_SQL = text(
    """SELECT p.model_versions,
              count(*) AS outcomes,
              count(*) FILTER (WHERE p.decision) AS trades,
              count(*) FILTER (WHERE p.decision AND o.success) AS wins,
              count(*) FILTER (WHERE o.success) AS successes,
              count(*) FILTER (WHERE NOT p.decision AND NOT o.success) AS rejected_failures,
              coalesce(sum(o.realized_profit_usd) FILTER (WHERE p.decision), 0) AS profit,
              coalesce(sum(o.realized_profit_usd ^ 2) FILTER (WHERE p.decision), 0)
                  AS profit_sq,
              sum(p.latency_ms) AS latency_ms
       FROM predictions p JOIN outcomes o USING (opportunity_id)
       WHERE p.predicted_at >= :since
       GROUP BY p.model_versions"""
)
LABELLED_SQL = text(
    """SELECT count(*) FROM predictions p JOIN outcomes o USING (opportunity_id)
       WHERE p.predicted_at >= :since AND p.features IS NOT NULL"""
)


@dataclass
class ArmFigures:
    """Outcomes of the predictions one arm of a test made."""

    outcomes: int = 0
    trades: int = 0
    wins: int = 0
    successes: int = 0
    rejected_failures: int = 0
    profit: float = 0.0
    profit_sq: float = 0.0
    latency_ms: float = 0.0

    def add(self, row: Any) -> None:
        self.outcomes += row.outcomes
        self.trades += row.trades
        self.wins += row.wins
        self.successes += row.successes
        self.rejected_failures += row.rejected_failures
        self.profit += float(row.profit)
        self.profit_sq += float(row.profit_sq)
        self.latency_ms += float(row.latency_ms)

    def summary(self) -> dict[str, float]:
        n = self.outcomes
        return {
            "outcomes": n,
            "trades": self.trades,
            "win_rate": self.wins / self.trades if self.trades else 0.0,
            "accuracy": (self.wins + self.rejected_failures) / n if n else 0.0,
            "recall": self.wins / self.successes if self.successes else 0.0,
            "realized_profit_usd": self.profit,
            "profit_per_opportunity_usd": self.profit / n if n else 0.0,
            "latency_ms_mean": self.latency_ms / n if n else 0.0,
        }

    def arm(self, label: str) -> Arm:
        return Arm(label, self.wins, self.trades, self.outcomes, self.profit, self.profit_sq)


def arm_figures(
    engine: Engine, members: list[str], since: datetime
) -> dict[tuple[str, ...], ArmFigures]:
    """Figures per combination of the tested members' versions."""
    arms: dict[tuple[str, ...], ArmFigures] = {}
    with engine.connect() as connection:
        for row in connection.execute(ARMS_SQL, {"since": since}):
            key = tuple(row.model_versions.get(m, "?") for m in members)
            arms.setdefault(key, ArmFigures()).add(row)
    return arms


class Controller:
    """Decides A/B tests and schedules retraining (see the module docstring)."""

    def __init__(self, settings: Settings, console: Console | None = None) -> None:
        self.settings = settings
        self.registry = Registry(settings.models_dir)
        self.engine = create_engine(settings.db_url, pool_pre_ping=True)
        self.console = console or Console(stderr=True)
        self.drift_at: datetime | None = None
        self.failed_at: datetime | None = None  # of the last retrain that failed
        self.producer: EventProducer | None = None

    async def run(self) -> None:
        """Run until cancelled."""
        async with EventProducer(self.settings) as self.producer:
            watch = asyncio.create_task(self.watch_drift())
            try:
                while True:
                    try:
                        await self.step()
                    except Exception:  # a failed step must not end the controller
                        log.exception("lifecycle step failed; trying again next interval")
                    await asyncio.sleep(self.settings.lifecycle_interval_s)
            finally:
                watch.cancel()

    async def step(self) -> None:
        manifest = self.registry.manifest()
        testing = manifest.testing()
        if testing:
            await self.judge(manifest, testing)
        else:
            await self.maybe_retrain(manifest)

    # -- A/B tests ------------------------------------------------------------------------

    async def judge(self, manifest: Manifest, testing: list[ModelEntry]) -> None:
        """Decide a running test: one candidate per tested member, against the active ones."""
        members = sorted({e.name for e in testing})
        if len(testing) != len(members):
            log.warning("more than one candidate per member under test; decide it by hand")
            return
        control = tuple(manifest.active(m).version for m in members)
        candidate = tuple(next(e.version for e in testing if e.name == m) for m in members)
        since = datetime.fromisoformat(min(e.testing_since or e.created for e in testing))
        arms = await asyncio.to_thread(arm_figures, self.engine, members, since)
        a, b = arms.get(control, ArmFigures()), arms.get(candidate, ArmFigures())

        def label(versions: tuple[str, ...]) -> str:
            return "+".join(f"{m}@{v}" for m, v in zip(members, versions, strict=True))

        s = self.settings
        decision = decide(
            a.arm(label(control)),
            b.arm(label(candidate)),
            min_samples=s.ab_min_samples,
            alpha=s.ab_alpha,
            effect_sd=s.ab_effect_sd,
            rule=s.decision_rule,
            profit_effect_sd_usd=s.ab_profit_effect_sd_usd,
        )
        figures = {"control": a.summary(), "candidate": b.summary()}
        await self.send(
            [
                Metric(
                    source="lifecycle",
                    values={
                        f"{arm}.{k}": float(v) for arm, s in figures.items() for k, v in s.items()
                    }
                    | {"z": decision.z, "p_value": decision.p_value},
                )
            ]
        )
        if decision.action == "continue":
            log.info("A/B test goes on: %s", decision.reason)
            return
        # in a thread: a promotion loads and validates the files again (about a second each)
        decision = await asyncio.to_thread(self.apply, decision, members, candidate)
        await self.announce(decision, label(candidate), label(control), figures)

    def apply(self, decision: Decision, members: list[str], candidate: tuple[str, ...]) -> Decision:
        """Write a test's decision into the registry, all or nothing: a candidate whose file no
        longer validates is rolled back with the others instead (the decision that was made)."""
        if decision.action == "promote":
            try:
                for member, version in zip(members, candidate, strict=True):
                    self.registry.vouch(self.registry.get(member, version))
            except ModelError as exc:
                log.error("A/B test won, but the candidate cannot be promoted: %s", exc)
                decision = replace(
                    decision,
                    action="rollback",
                    reason=f"{decision.reason}; but the candidate cannot be promoted: {exc}",
                )
        if decision.action == "promote":
            for member, version in zip(members, candidate, strict=True):
                self.registry.promote(member, version)
        else:
            for member in members:
                self.registry.rollback(member)
        self.settle_stacking(decision.action == "promote", set(candidate))
        return decision

    def settle_stacking(self, promoted: bool, versions: set[str]) -> None:
        """The meta-learner refitted with the tested versions (a stacking candidate of their
        version) serves when they are promoted and is archived when they are rolled back."""
        for e in self.registry.entries():
            if e.name == STACKING and e.status == "candidate" and e.version in versions:
                if promoted:
                    self.registry.promote(STACKING, e.version)
                else:
                    self.registry.add([replace(e, status="archived")])

    async def announce(
        self, decision: Decision, candidate: str, control: str, figures: dict[str, Any]
    ) -> None:
        """Publish the new manifest to the workers and the decision to the alerts topic."""
        verb = "promoted" if decision.action == "promote" else "rolled back"
        manifest = self.registry.manifest()
        await publish(self.settings, manifest, f"A/B test: {candidate} {verb}")
        message = f"A/B test: {candidate} {verb} against {control}: {decision.reason}"
        log.info(message)
        await self.send(
            [
                Alert(
                    alert_id=uuid.uuid4().hex,
                    kind=f"ab-test.{decision.action}",
                    severity="info" if decision.action == "promote" else "warning",
                    message=message,
                    data={
                        "action": decision.action,
                        "z": decision.z,
                        "p_value": decision.p_value,
                        "alpha": self.settings.ab_alpha,
                        "effect_sd": self.settings.ab_effect_sd,
                        "decision_rule": self.settings.decision_rule,
                        "profit_effect_sd_usd": self.settings.ab_profit_effect_sd_usd,
                        "min_samples": self.settings.ab_min_samples,
                        "control": control,
                        "candidate": candidate,
                        "revision": manifest.revision,
                    }
                    | figures,
                    model_version=candidate,
                )
            ]
        )

    # -- retraining -----------------------------------------------------------------------

    async def maybe_retrain(self, manifest: Manifest) -> None:
        s = self.settings
        newest = max(
            datetime.fromisoformat(e.created) for e in manifest.entries if e.name == "xgboost"
        )
        drifted = s.retrain_on_drift and self.drift_at is not None and self.drift_at > newest
        since = self.drift_at if drifted and self.drift_at else newest
        # after a failed retrain, new outcomes are counted from the failure: no alert storm
        counted = max(since, self.failed_at) if self.failed_at else since
        labelled = await asyncio.to_thread(self.labelled_since, counted)
        elapsed = (datetime.now(UTC) - newest).total_seconds()
        if labelled < s.retrain_min_samples or not (drifted or elapsed >= s.retrain_min_interval_s):
            return
        why = f"drift at {since:%H:%M:%S}" if drifted else f"{elapsed / 3600:.1f} h since the last"
        trigger = "drift" if drifted else "schedule"
        log.info("retraining on %d new outcomes (%s)", labelled, why)
        try:
            result = await asyncio.to_thread(
                retrain,
                self.engine,
                s.models_dir,
                since=since if drifted else datetime.fromtimestamp(0, UTC),
                window=s.retrain_window,
                min_rows=s.retrain_min_samples,
                candidate_traffic=s.retrain_candidate_traffic,
                threshold=s.threshold,
                auc_margin=s.retrain_auc_margin,
                logloss_margin=s.retrain_logloss_margin,
                console=self.console,
            )
        except RetrainError as exc:
            log.warning("retrain skipped: %s", exc)
            return
        except Exception as exc:  # a failed retrain must not end the controller: it says so
            log.exception("retrain failed")
            self.failed_at = datetime.now(UTC)
            await self.send([retrain_failed(exc, why, trigger, s.retrain_min_samples)])
            return
        self.failed_at = None
        tested = result.tested
        verdict = f"{'+'.join(tested)} in an A/B test" if tested else "every candidate rejected"
        await publish(s, result.manifest, f"retrained {result.version}: {verdict}")
        alerts: list[Event] = [
            retrain_rejected(result, member, reason, trigger, s)
            for member, reason in result.rejected.items()
        ]
        if tested:
            alerts.append(retrain_tested(result, why, trigger, s))
        await self.send(alerts)

    def labelled_since(self, since: datetime) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(LABELLED_SQL, {"since": since}).scalar_one())

    async def watch_drift(self) -> None:
        """Remember the time of the latest drift alert (``drift.*``) on the alerts topic."""
        # from the beginning: drift before a restart still counts (invalid alerts are skipped)
        async with EventConsumer(Alert, from_beginning=True, settings=self.settings) as alerts:
            async for alert in alerts:
                if alert.kind.startswith("drift."):
                    at = datetime.fromtimestamp(alert.timestamp, UTC)
                    if self.drift_at is None or at > self.drift_at:
                        self.drift_at = at
                        log.info("drift noted: %s", alert.message)

    async def send(self, events: list[Event]) -> None:
        assert self.producer is not None
        await self.producer.send_many(events)
        await self.producer.flush()


def retrain_tested(result: RetrainResult, why: str, trigger: str, s: Settings) -> Alert:
    """The ``retrain`` alert: which members' new versions entered the A/B test."""
    auc = ", ".join(
        f"{m} {c['candidate']['auc']:.4f} (active {c['active']['auc']:.4f})"
        for m, c in result.comparison.items()
        if m in result.tested
    )
    rejected = f"; rejected: {', '.join(result.rejected)}" if result.rejected else ""
    return Alert(
        alert_id=uuid.uuid4().hex,
        kind="retrain",
        severity="info",
        message=(
            f"retrained {result.version} on {result.rows:,} outcomes ({why}); "
            f"{', '.join(result.tested)} entered an A/B test with "
            f"{s.retrain_candidate_traffic:.0%} of routes (held-out AUC {auc}){rejected}"
        ),
        data={
            "version": result.version,
            "rows": result.rows,
            "trigger": trigger,
            "tested": result.tested,
            "rejected": result.rejected,
            "stacking": result.stacking.version if result.stacking else None,
            "comparison": result.comparison,
            "candidate_traffic": s.retrain_candidate_traffic,
            "revision": result.manifest.revision,
        },
        model_version=result.version,
    )


def retrain_rejected(
    result: RetrainResult, member: str, reason: str, trigger: str, s: Settings
) -> Alert:
    """The ``retrain.rejected`` alert of one member whose new version the gate refused."""
    active = result.manifest.active(member).version
    return Alert(
        alert_id=uuid.uuid4().hex,
        kind="retrain.rejected",
        severity="warning",
        message=(
            f"retrained {member}@{result.version} rejected, {member}@{active} keeps its traffic: "
            f"{reason}"
        ),
        data={
            "member": member,
            "version": result.version,
            "active_version": active,
            "reason": reason,
            "auc_margin": s.retrain_auc_margin,
            "logloss_margin": s.retrain_logloss_margin,
            "rows": result.rows,
            "trigger": trigger,
            "revision": result.manifest.revision,
        }
        | result.comparison[member],
        model_version=result.version,
    )


def retrain_failed(exc: Exception, why: str, trigger: str, min_samples: int) -> Alert:
    """The ``retrain.failed`` alert: training raised; traffic is as it was."""
    error = f"{type(exc).__name__}: {exc}"
    return Alert(
        alert_id=uuid.uuid4().hex,
        kind="retrain.failed",
        severity="critical",
        message=(
            f"retrain ({why}) failed, traffic unchanged; next try after {min_samples:,} more "
            f"outcomes: {error}"
        ),
        data={"error": type(exc).__name__, "detail": str(exc), "trigger": trigger, "why": why},
    )
