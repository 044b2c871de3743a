"""Prometheus metrics of a bridge, served at GET /metrics: counters of the relay and the
server, and the hub's own figures read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .hub import Hub

REGISTRY = CollectorRegistry()

RELAYED = Counter(
    "apex_bridge_messages_relayed_total",
    "Messages relayed from Kafka",
    ["channel"],
    registry=REGISTRY,
)
INVALID = Counter(
    "apex_bridge_invalid_messages_total",
    "Messages that failed validation and were not relayed",
    ["channel"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "apex_bridge_rejected_total", "Connections refused", ["reason"], registry=REGISTRY
)
DISCONNECTED = Counter(
    "apex_bridge_disconnected_total",
    "Clients the bridge disconnected",
    ["reason"],
    registry=REGISTRY,
)
COMMANDS = Counter("apex_bridge_commands_total", "Client commands", ["type"], registry=REGISTRY)
KAFKA_LAG = Gauge(
    "apex_bridge_kafka_lag_messages",
    "High watermark minus the relay's position",
    ["channel", "partition"],
    registry=REGISTRY,
)
RELAY_LAG = Histogram(
    "apex_bridge_relay_lag_seconds",
    "Kafka record timestamp to fan-out (oldest of each batch)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    registry=REGISTRY,
)


class HubCollector(Collector):
    """Clients, queued, delivered and dropped messages, as the hub counts them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        yield GaugeMetricFamily(
            "apex_bridge_clients", "Connected websocket clients", value=len(hub.clients)
        )
        yield GaugeMetricFamily(
            "apex_bridge_queued_messages",
            "Messages waiting in client queues",
            value=sum(c.queued for c in hub.clients.values()),
        )
        yield CounterMetricFamily(
            "apex_bridge_deliveries", "Messages sent to clients", value=hub.delivered
        )
        yield CounterMetricFamily(
            "apex_bridge_dropped", "Messages dropped from full client queues", value=hub.dropped
        )
