"""The Kafka client layer's configuration: what each client is built with (no broker: the aiokafka
classes are replaced by recorders of their arguments)."""

from __future__ import annotations

from typing import Any

import pytest

from apex_stream import client
from apex_stream.client import (
    EventConsumer,
    EventProducer,
    PredictionConsumer,
    kafka_admin,
    kafka_consumer,
    kafka_producer,
)
from apex_stream.events import Alert
from apex_stream.settings import Settings

SETTINGS = Settings(kafka_bootstrap_servers="broker:9092", topic_prefix="t.")


class Built:
    """Stands in for an aiokafka client: keeps what it was built with."""

    def __init__(self, *topics: str, **config: Any) -> None:
        self.topics, self.config = topics, config


@pytest.fixture(autouse=True)
def recorders(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"):
        monkeypatch.setattr(client, name, Built)


def test_producers_wait_for_every_in_sync_replica_unless_told_otherwise() -> None:
    assert kafka_producer(SETTINGS).config == {"bootstrap_servers": "broker:9092", "acks": "all"}
    assert kafka_producer(SETTINGS, acks=1, linger_ms=0).config == {
        "bootstrap_servers": "broker:9092",
        "acks": 1,
        "linger_ms": 0,
    }


def test_consumers_commit_only_when_told_and_start_where_asked() -> None:
    tail = kafka_consumer(SETTINGS, "t.predictions")
    assert tail.topics == ("t.predictions",)
    assert tail.config == {
        "bootstrap_servers": "broker:9092",
        "group_id": None,
        "auto_offset_reset": "latest",
        "enable_auto_commit": False,
    }
    group = kafka_consumer(SETTINGS, group_id="g", from_beginning=True, max_poll_records=10)
    assert group.topics == ()
    assert group.config == {
        "bootstrap_servers": "broker:9092",
        "group_id": "g",
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "max_poll_records": 10,
    }


def test_admin_on_the_configured_brokers() -> None:
    assert kafka_admin(SETTINGS).config == {"bootstrap_servers": "broker:9092"}


def test_event_producer_batches_on_top_of_the_defaults() -> None:
    built = EventProducer(SETTINGS)._producer
    assert built.config == {
        "bootstrap_servers": "broker:9092",
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": 262_144,
    }
    assert EventProducer(SETTINGS, linger_ms=1)._producer.config["linger_ms"] == 1


def test_event_consumers_commit_automatically_only_in_a_group() -> None:
    tail = EventConsumer(Alert, from_beginning=True, settings=SETTINGS)._consumer
    assert tail.topics == ("t.alerts",)
    assert tail.config["group_id"] is None and not tail.config["enable_auto_commit"]
    assert tail.config["auto_offset_reset"] == "earliest"
    bot = PredictionConsumer(group_id="my-bot", settings=SETTINGS)._consumer
    assert bot.topics == ("t.predictions",)
    assert bot.config["group_id"] == "my-bot" and bot.config["enable_auto_commit"]
    assert bot.config["auto_offset_reset"] == "latest"
