"""A worker: the pipeline's app with the prices agent, the batch data path, the HTTP views and
live reload, and how to run it."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import uuid

import faust

from .api.app import attach as attach_api
from .app import Pipeline
from .errors import TopicError
from .events import Alert
from .features import agent as features_agent
from .features.agent import MarketView
from .inference.control import follow
from .inference.ensemble import Ensemble
from .inference.online_member import SnapshotError
from .inference.registry import Manifest
from .inference.scoring import Scorer
from .learning.monitor import Monitor
from .learning.outcomes import Learning
from .logs import quiet_repeats
from .metrics import MODEL_REVISION, PROVIDER
from .settings import Settings
from .stream.process import Process
from .stream.source import BatchSource
from .topics import TopicAdmin

log = logging.getLogger("apex_stream.worker")


def build(settings: Settings) -> tuple[Pipeline, BatchSource]:
    """The app with the prices agent, the batch data path (opportunities and outcomes), the
    HTTP views and live reload."""
    pipeline = Pipeline(settings)
    ensemble = Ensemble(settings)
    learning = Learning(
        ensemble.online,
        ensemble.online_means,
        settings.threshold,
        settings.learner_snapshot_every,
        rule=settings.decision_rule,
        min_expected_profit_usd=settings.min_expected_profit_usd,
    )
    scorer = Scorer(ensemble, MarketView(pipeline))
    process = Process(settings, scorer, learning, Monitor(settings, source=f"worker-{os.getpid()}"))
    source = BatchSource(pipeline, process)
    features_agent.attach(pipeline)
    attach_stream(pipeline, source)
    attach_api(pipeline, process, source)
    attach_reload(pipeline, source)
    for member, provider in ensemble.providers.items():
        PROVIDER.labels(member, provider).set(1)
    MODEL_REVISION.set(ensemble.revision)
    return pipeline, source


def attach_stream(pipeline: Pipeline, source: BatchSource) -> None:
    """Start the batch data path with the app; report the monitor's figures periodically."""
    app, process = pipeline.app, source.process

    # faust marks App.task and App.timer @no_type_check
    @app.task  # type: ignore[untyped-decorator]
    async def start_batch_path() -> None:
        learning, table = process.learning, pipeline.learner_state
        blob = table.get(pipeline.settings.app_id.encode())  # tables are recovered by now
        alerts = process.failures.report(process.scorer.ensemble.failures, "load")
        if blob is not None and learning.learner is not None:
            try:
                learning.restore(blob)
            except SnapshotError as exc:
                alerts.append(snapshot_refused(exc, learning.learner.version))
                log.error(alerts[-1].message)
        settle_garbage_collector()
        await app.add_runtime_dependency(source)
        if alerts:
            await source.publish(alerts)

    @app.timer(interval=pipeline.settings.metrics_every_s)  # type: ignore[untyped-decorator]
    async def report() -> None:
        """Threshold alerts and this period's figures to the alerts and metrics topics."""
        monitor = process.monitor
        if source.owned:  # started
            await source.publish([*monitor.health(), monitor.metric()])


def snapshot_refused(reason: SnapshotError, version: str) -> Alert:
    """The alert for a learner-state snapshot that was not loaded."""
    return Alert(
        alert_id=uuid.uuid4().hex,
        kind="online.snapshot-refused",
        severity="critical",
        message=(
            f"online learner: the learner-state snapshot was refused ({reason}); continuing "
            f"from the shipped model {version}"
        ),
        data={},
        model_version=version,
    )


def settle_garbage_collector() -> None:
    """Stop the collector from rescanning what start-up built (the app, the models: hundreds of
    thousands of objects) on every full collection, and collect the young generation less
    often: the batch path allocates per batch and frees by reference counting. Measured in
    bench/pipeline.md: collections took a fifth of the worker's time without this."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def attach_reload(pipeline: Pipeline, source: BatchSource) -> None:
    """Serve every newer manifest revision published on the model-control topic whose new
    versions load and pass the reference check; alert on one that does not."""
    settings = pipeline.settings
    process = source.process
    scorer, learning = process.scorer, process.learning

    def build(manifest: Manifest) -> Ensemble:
        return Ensemble(settings, manifest, previous=scorer.ensemble, strict=True)

    def install(ensemble: Ensemble, reason: str) -> None:
        # between two batches: the batch path reads ``scorer.ensemble`` once per batch
        scorer.ensemble = ensemble
        learning.learner, learning.means = ensemble.online, ensemble.online_means
        process.failures.refused = None
        MODEL_REVISION.set(ensemble.revision)
        log.info(
            "serving manifest revision %d (%s): %s", ensemble.revision, reason, ensemble.describe()
        )

    async def refuse(revision: int, error: Exception) -> None:
        await source.publish(
            [process.failures.refuse(revision, scorer.ensemble.revision, str(error))]
        )

    @pipeline.app.task  # type: ignore[untyped-decorator]  # faust: @no_type_check
    async def reload_models() -> None:
        await follow(settings, lambda: scorer.ensemble.revision, build, install, refuse)


#: Topics whose partition p one worker holds together (the batch path follows prices).
COPARTITIONED = ("prices", "opportunities", "outcomes", "predictions")


async def prepare_topics(pipeline: Pipeline) -> None:
    """Create Faust's own topics and wait for their leaders (:meth:`Pipeline.internal_topics`);
    refuse to start when the co-partitioned topics differ in partition count."""
    async with TopicAdmin(pipeline.settings) as admin:
        created = await admin.ensure(pipeline.internal_topics())
        states = {state.spec.name: state.partitions for state in await admin.describe()}
    if created:
        log.info("created Faust's topics %s", ", ".join(created))
    counts = {name: states[name] for name in COPARTITIONED if states.get(name)}
    if len(set(counts.values())) > 1:
        raise TopicError(
            f"partition counts differ: {counts}; a worker holds partition p of each of "
            f"{', '.join(COPARTITIONED)}, so give them one count "
            f"({pipeline.settings.topics_dir}/*.json, then recreate them and "
            "`apex-stream topics create`)"
        )


def run(settings: Settings) -> None:
    """Run a worker until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # before the app exists, so Faust binds to it
    pipeline, _ = build(settings)
    loop.run_until_complete(prepare_topics(pipeline))
    worker = faust.Worker(pipeline.app, loop=loop, loglevel=settings.log_level.lower())
    # Faust's terminal spinner turns every DEBUG call into a log record (and a redraw) at
    # WARNING level: costly on the hot path, useless in a service
    worker.spinner = None
    quiet_repeats("aiokafka")
    worker.execute_from_commandline()
