"""Prometheus metrics of a worker, served at GET /metrics."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString


class BatchHistogram:
    """A Prometheus histogram observed a whole batch at a time with numpy (prometheus_client's
    Histogram takes one value per call), exposed through a custom collector."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, np.float64)
        self.counts = np.zeros(len(buckets) + 1, np.int64)  # the last one is +Inf
        self.total = 0.0
        REGISTRY.register(self)

    def observe(self, values: ArrayLike) -> None:
        """Count every value of a batch into its bucket (``le``: upper bound inclusive)."""
        values = np.asarray(values, np.float64)
        self.counts += np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts)
        )
        self.total += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative = np.cumsum(self.counts).tolist()
        labels = [*map(floatToGoString, self.bounds.tolist()), "+Inf"]
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=list(zip(labels, cumulative, strict=True)),
            sum_value=self.total,
        )

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)


SCORED = Counter("apex_opportunities_scored_total", "Opportunities scored", ["decision"])
DEAD_LETTERS = Counter(
    "apex_dead_letters_total", "Messages sent to the dead-letter topic", ["source"]
)
BATCH_SIZE = BatchHistogram(
    "apex_batch_size",
    "Opportunities per scored batch",
    buckets=(1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)
LATENCY = BatchHistogram(
    "apex_prediction_latency_seconds",
    "Record timestamp of an opportunity to its prediction being sent",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SECONDS = BatchHistogram(
    "apex_batch_processing_seconds",
    "Decoding, features, models, voting, join and learning per fetched batch",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)
OUTCOMES = Counter(
    "apex_outcomes_total",
    "Outcomes: joined with their scored features, or given up on (expired)",
    ["joined"],
)
SCORED_EXPIRED = Counter(
    "apex_scored_expired_total",
    "Scored opportunities forgotten without an outcome: after features_ttl_s, or evicted from "
    "a full join ring",
    ["reason"],
)
CONSUMER_LAG = Gauge(
    "apex_consumer_lag",
    "Records the batch path's consumer is behind on the partitions it holds (every 5 s)",
    ["topic"],
)
JOIN_WAITING = Gauge("apex_join_waiting", "Entries waiting in the outcome join", ["side"])
PRICE_TICKS = Counter("apex_price_ticks_total", "Price ticks applied to the market state")
PROVIDER = Gauge(
    "apex_model_provider_info", "Where each member runs (1 = in use)", ["member", "provider"]
)
ONLINE_LEARNED = Gauge("apex_online_learner_samples", "Outcomes the online learner has seen")
MEMBER_FAILURES = Counter(
    "apex_member_failures_total",
    "Ensemble member failures (stage: load, or score for a batch); the member sat out",
    ["member", "stage"],
)
HEURISTIC_SCORED = Counter(
    "apex_opportunities_heuristic_total",
    "Opportunities no member answered, scored by the heuristic",
)
MODEL_REVISION = Gauge("apex_model_manifest_revision", "Manifest revision the worker serves")

# Seed 002's engine metrics, under its names, for its dashboards (the /predict route)
AI_CONFIDENCE = Gauge("ai_prediction_confidence", "Latest confidence of the 8-feature /predict")
AI_LATENCY = Histogram(
    "ai_inference_latency_ms",
    "Inference time of the 8-feature /predict (ms)",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100),
)
AI_REQUESTS = Counter("ai_requests_total", "Requests to the 8-feature /predict")
API_REQUESTS = Counter(
    "apex_api_requests_total", "Requests to the worker's HTTP API", ["route", "status"]
)
API_SECONDS = Histogram(
    "apex_api_request_seconds",
    "Time of a request to the worker's HTTP API, by route template",
    ["route"],
    # a health check takes well under a millisecond, a 10,000-row batch seconds
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
