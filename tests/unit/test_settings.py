"""Configuration from the environment."""

from __future__ import annotations

import pytest

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
