"""Local services: the Kafka broker and PostgreSQL cluster that `apex-stream up` manages."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..settings import Settings
from .kafka import KafkaService, broker_answers
from .postgres import PostgresService

__all__ = ["KafkaService", "PostgresService", "ServiceStatus", "down", "status", "up"]


@dataclass(frozen=True)
class ServiceStatus:
    """One service as `apex-stream status` shows it."""

    name: str
    address: str
    managed: bool
    up: bool
    changed: bool = False


def up(settings: Settings) -> list[ServiceStatus]:
    """Start whatever apex-stream manages and is not running yet; wait until each answers."""
    result = []
    if settings.manages_kafka:
        kafka = KafkaService(settings)
        result.append(ServiceStatus("kafka", kafka.address, True, True, kafka.start()))
    if settings.manages_postgres:
        pg = PostgresService(settings)
        result.append(ServiceStatus("postgres", pg.address, True, True, pg.start()))
    return result


def down(settings: Settings) -> list[ServiceStatus]:
    """Stop the services apex-stream manages; external ones are left alone."""
    result = []
    if settings.manages_kafka:
        kafka = KafkaService(settings)
        result.append(ServiceStatus("kafka", kafka.address, True, False, kafka.stop()))
    if settings.manages_postgres:
        pg = PostgresService(settings)
        result.append(ServiceStatus("postgres", pg.address, True, False, pg.stop()))
    return result


def status(settings: Settings) -> list[ServiceStatus]:
    """Whether Kafka and PostgreSQL answer, managed or external."""
    kafka_up = broker_answers(settings.bootstrap_servers)
    return [
        ServiceStatus("kafka", settings.bootstrap_servers, settings.manages_kafka, kafka_up),
        ServiceStatus(
            "postgres", _db_address(settings), settings.manages_postgres, _db_answers(settings)
        ),
    ]


def _db_address(settings: Settings) -> str:
    return settings.db_url.split("@", 1)[-1]


def _db_answers(settings: Settings) -> bool:
    url = settings.db_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True
