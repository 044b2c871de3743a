"""Prometheus metrics of a sink process (`apex-stream sink`, port ``APEX_SINK_METRICS_PORT``):
the sink's own figures, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .agent import Sink


class SinkCollector(Collector):
    """Rows written per table, dead letters, invalid events, backlog and outage."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Metric]:
        sink = self.sink
        rows = CounterMetricFamily(
            "apex_sink_rows_written", "Rows the sink stored, by table", labels=["table"]
        )
        for table, n in sorted(sink.written.items()):
            rows.add_metric([table], n)
        yield rows
        yield CounterMetricFamily(
            "apex_sink_dead_letters",
            "Messages the sink could not store, sent to dead-letters",
            value=sink.dead_lettered,
        )
        yield CounterMetricFamily(
            "apex_sink_invalid_events",
            "Invalid events skipped (the worker dead-letters them)",
            value=sink.invalid,
        )
        yield GaugeMetricFamily(
            "apex_sink_backlog_messages",
            "Messages past the committed offsets, as of the last metrics message",
            value=sink.backlog,
        )
        yield GaugeMetricFamily(
            "apex_sink_database_down_seconds",
            "How long the database has been unavailable (0 while it is up)",
            value=sink.down_for,
        )


def serve(sink: Sink, port: int) -> None:
    """Serve ``sink``'s metrics at ``http://0.0.0.0:port/metrics`` from a daemon thread
    (port 0: not served)."""
    if not port:
        return
    registry = CollectorRegistry()
    registry.register(SinkCollector(sink))
    start_http_server(port, registry=registry)
