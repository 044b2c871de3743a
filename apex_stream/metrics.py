"""Prometheus metrics of a worker, served at GET /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SCORED = Counter("apex_opportunities_scored_total", "Opportunities scored", ["decision"])
DEAD_LETTERS = Counter(
    "apex_dead_letters_total", "Messages sent to the dead-letter topic", ["source"]
)
BATCH_SIZE = Histogram(
    "apex_batch_size",
    "Opportunities per micro-batch",
    buckets=(1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)
LATENCY = Histogram(
    "apex_prediction_latency_seconds",
    "Record timestamp of an opportunity to its prediction being sent",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SECONDS = Histogram(
    "apex_batch_processing_seconds",
    "Features, models and voting per batch",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)
OUTCOMES = Counter(
    "apex_outcomes_total", "Outcomes joined with their scored features, or given up on", ["joined"]
)
PRICE_TICKS = Counter("apex_price_ticks_total", "Price ticks applied to the market state")
PROVIDER = Gauge(
    "apex_model_provider_info", "Where each member runs (1 = in use)", ["member", "provider"]
)
ONLINE_LEARNED = Gauge("apex_online_learner_samples", "Outcomes the online learner has seen")
MODEL_REVISION = Gauge("apex_model_manifest_revision", "Manifest revision the worker serves")
