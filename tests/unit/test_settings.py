"""Configuration from the environment."""

from __future__ import annotations

import pytest

from apex_stream.settings import Settings, SettingsError, check_seed_names


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


SEED_ENV = (
    "APEX_THRESHOLD",
    "AI_THRESHOLD",
    "ML_THRESHOLD",
    "ML_CONFIDENCE_THRESHOLD",
    "ML_USE_GPU",
    "LIVE_TRADING",
    "AI_ENGINE_PORT",
    "TIMESERIES_CONNECTION_STRING",
    "DATABASE_URL",
)


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("AI_THRESHOLD", "0.78", "threshold", 0.78),  # seed 002
        ("ML_THRESHOLD", "0.65", "threshold", 0.65),  # seed 004
        ("ML_CONFIDENCE_THRESHOLD", "0.7", "threshold", 0.7),  # seed 001
        ("ML_USE_GPU", "false", "device", "cpu"),  # seed 001
        ("ML_USE_GPU", "true", "device", "cuda"),
        ("LIVE_TRADING", "true", "live_trading", True),  # seed 002
        ("AI_ENGINE_PORT", "8001", "web_port", 8001),  # seed 002
        (
            "TIMESERIES_CONNECTION_STRING",  # seed 001
            "postgresql://user:pass@localhost:5432/ml_db",
            "db_url",
            "postgresql+psycopg://user:pass@localhost:5432/ml_db",
        ),
    ],
)
def test_seed_names_are_aliases(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str, expected: object
) -> None:
    for other in SEED_ENV:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, value)
    assert check_seed_names({name: value}) == []
    assert getattr(Settings(), field) == expected


def test_our_name_wins_and_disagreeing_names_are_refused() -> None:
    assert check_seed_names({"APEX_THRESHOLD": "0.7", "AI_THRESHOLD": "0.70"}) == []
    with pytest.raises(SettingsError, match="disagree"):
        check_seed_names({"live_trading": "true", "APEX_LIVE_TRADING": "false"})
    with pytest.raises(SettingsError, match="APEX_THRESHOLD=0.6, AI_THRESHOLD=0.78 disagree"):
        check_seed_names({"APEX_THRESHOLD": "0.6", "AI_THRESHOLD": "0.78"})


def test_a_single_model_file_is_refused_naming_our_variable() -> None:
    with pytest.raises(SettingsError, match="AI_MODEL_PATH .*APEX_MODELS_DIR.*models register"):
        check_seed_names({"AI_MODEL_PATH": "./data/models/lstm_omni.onnx"})


def test_seed_names_without_a_knob_are_reported() -> None:
    [note] = check_seed_names({"REDIS_HOST": "127.0.0.1"})
    assert note.startswith("REDIS_HOST is set but apex-stream has no such setting")
