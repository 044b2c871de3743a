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


def _managed(settings: Settings) -> list[tuple[str, KafkaService | PostgresService]]:
    """The services apex-stream runs itself (those without an external URL)."""
    managed: list[tuple[str, KafkaService | PostgresService]] = []
    if settings.manages_kafka:
        managed.append(("kafka", KafkaService(settings)))
    if settings.manages_postgres:
        managed.append(("postgres", PostgresService(settings)))
    return managed


def up(settings: Settings) -> list[ServiceStatus]:
    """Start whatever apex-stream manages and is not running yet; wait until each answers."""
    return [ServiceStatus(n, s.address, True, True, s.start()) for n, s in _managed(settings)]


def down(settings: Settings) -> list[ServiceStatus]:
    """Stop the services apex-stream manages; external ones are left alone."""
    return [ServiceStatus(n, s.address, True, False, s.stop()) for n, s in _managed(settings)]


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
