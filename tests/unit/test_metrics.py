"""A histogram observed a batch at a time exposes what Prometheus' own would."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY, Histogram

from apex_stream.metrics import BatchHistogram


def test_batch_observations_match_prometheus_histogram() -> None:
    buckets = (0.001, 0.01, 0.1, 1.0)
    ours = BatchHistogram("apex_test_batch_seconds", "test", buckets)
    theirs = Histogram("apex_test_one_by_one_seconds", "test", buckets=buckets)
    values = np.r_[0.0005, 0.001, 0.002, 0.01, 0.5, 1.0, 7.0, np.full(10, 0.05)]
    ours.observe(values[:7])
    ours.observe(values[7:])
    for v in values.tolist():
        theirs.observe(v)
    try:
        mine = {
            (s.name.replace("batch", "x"), s.labels.get("le")): s.value
            for s in next(iter(ours.collect())).samples
        }
        ref = {
            (s.name.replace("one_by_one", "x"), s.labels.get("le")): s.value
            for s in next(iter(theirs.collect())).samples
            if not s.name.endswith("_created")
        }
        assert mine == pytest.approx(ref)
        assert mine["apex_test_x_seconds_bucket", "0.01"] == 4  # le: bound included
    finally:
        REGISTRY.unregister(ours)
        REGISTRY.unregister(theirs)
