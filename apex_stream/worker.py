"""A worker: the pipeline's app with every agent attached, and how to run it."""

from __future__ import annotations

import asyncio
import logging

import faust

from . import api
from .app import Pipeline
from .features import agent as features_agent
from .features.agent import MarketView
from .inference import agent as inference_agent
from .inference.agent import Scorer
from .inference.control import follow
from .inference.ensemble import Ensemble
from .inference.registry import Manifest
from .learning import agent as learning_agent
from .learning.agent import Learning
from .metrics import MODEL_REVISION, PROVIDER
from .settings import Settings
from .topics import TopicAdmin

log = logging.getLogger("apex_stream.worker")


def build(settings: Settings) -> Pipeline:
    """The app with the prices, opportunities and outcomes agents and the HTTP views."""
    pipeline = Pipeline(settings)
    ensemble = Ensemble(settings)
    learning = Learning(pipeline, ensemble.online, ensemble.online_means, settings.threshold)
    scorer = Scorer(ensemble, MarketView(pipeline))
    features_agent.attach(pipeline)
    inference_agent.attach(pipeline, scorer, learning)
    learning_agent.attach(pipeline, learning)
    api.attach(pipeline, scorer, learning)
    attach_reload(pipeline, scorer, learning)
    for member, provider in ensemble.providers.items():
        PROVIDER.labels(member, provider).set(1)
    MODEL_REVISION.set(ensemble.revision)
    return pipeline


def attach_reload(pipeline: Pipeline, scorer: Scorer, learning: Learning) -> None:
    """Serve every newer manifest revision published on the model-control topic."""
    settings = pipeline.settings

    def build(manifest: Manifest) -> Ensemble:
        return Ensemble(settings, learning.learner, manifest, previous=scorer.ensemble)

    def install(ensemble: Ensemble, reason: str) -> None:
        # between two batches: the agent reads ``scorer.ensemble`` once per batch
        scorer.ensemble = ensemble
        learning.learner, learning.means = ensemble.online, ensemble.online_means
        MODEL_REVISION.set(ensemble.revision)
        log.info(
            "serving manifest revision %d (%s): %s", ensemble.revision, reason, ensemble.describe()
        )

    @pipeline.app.task
    async def reload_models() -> None:
        await follow(settings, lambda: scorer.ensemble.revision, build, install)


async def declare_internal_topics(pipeline: Pipeline) -> None:
    """Create Faust's own topics and wait for their leaders (:meth:`Pipeline.internal_topics`)."""
    async with TopicAdmin(pipeline.settings) as admin:
        created = await admin.ensure(pipeline.internal_topics())
    if created:
        log.info("created Faust's topics %s", ", ".join(created))


def run(settings: Settings) -> None:
    """Run a worker until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    logging.basicConfig(level=settings.log_level)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # before the app exists, so Faust binds to it
    pipeline = build(settings)
    loop.run_until_complete(declare_internal_topics(pipeline))
    worker = faust.Worker(pipeline.app, loop=loop, loglevel=settings.log_level.lower())
    # Faust's terminal spinner turns every DEBUG call into a log record (and a redraw) at
    # WARNING level: costly on the hot path, useless in a service
    worker.spinner = None
    worker.execute_from_commandline()
