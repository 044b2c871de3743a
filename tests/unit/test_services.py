"""Clear errors when a local service's tools are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex_stream.errors import ServiceError
from apex_stream.services.kafka import KafkaService
from apex_stream.services.postgres import find_bin
from apex_stream.services.probe import require_binary
from apex_stream.settings import Settings


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
