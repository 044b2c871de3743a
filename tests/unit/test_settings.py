"""Configuration from the environment, and clear errors when a service's tools are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex_stream.errors import ServiceError
from apex_stream.services.kafka import KafkaService
from apex_stream.services.postgres import find_bin
from apex_stream.services.probe import require_binary
from apex_stream.settings import Settings


def test_local_services_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("APEX_KAFKA_PORT", "20000")
    settings = Settings()
    assert settings.manages_kafka and settings.manages_postgres
    assert settings.bootstrap_servers == "127.0.0.1:20000"
    assert settings.db_url == "postgresql+psycopg://apex@127.0.0.1:55433/apex"


def test_external_services_from_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@db/x")
    monkeypatch.setenv("APEX_TOPIC_PREFIX", "staging.")
    settings = Settings()
    assert not settings.manages_kafka and not settings.manages_postgres
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.topic_name("predictions") == "staging.predictions"


def test_settings_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        Settings().topic_prefix = "x"  # type: ignore[misc]


def test_missing_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServiceError, match=r"`java` not found on PATH: install Java 17"):
        KafkaService(Settings(kafka_port=1, kafka_controller_port=2))._java()


def test_missing_maven_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    service = KafkaService(Settings(home=tmp_path, kafka_version="0.0.0"))
    with pytest.raises(ServiceError, match=r"`mvn` not found.*apt-get install maven"):
        service.fetch_jars()


def test_missing_postgres_binaries_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(()))
    with pytest.raises(ServiceError, match="apt-get install postgresql"):
        find_bin(tmp_path)


def test_require_binary_finds_what_is_there() -> None:
    assert require_binary("sh", "unused").endswith("/sh")
