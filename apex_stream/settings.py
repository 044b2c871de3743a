"""One frozen settings object, read from environment variables (12-factor).

Standard names stay standard (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``); everything else is
``APEX_*``. When the two service URLs are unset, ``apex-stream up`` runs local services and the
defaults below point at them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .resources import TOPICS

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob apex-stream reads; see the table in README.md."""

    model_config = SettingsConfigDict(env_prefix="APEX_", frozen=True, extra="ignore")

    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))

    home: Path = Path.home() / ".cache" / "apex-stream"
    kafka_version: str = "3.9.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "768m"
    postgres_port: int = 55433
    postgres_bin: Path | None = None
    postgres_data: Path | None = None

    topics_dir: Path = TOPICS
    topic_prefix: str = ""
    replication_factor: int = Field(default=1, ge=1)

    log_level: str = "INFO"

    models_dir: Path = ROOT / "models"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    onnx_threads: int = Field(default=1, ge=1)
    xgboost_threads: int = Field(default=1, ge=1)
    voting_strategy: Literal["weighted", "majority", "unanimous", "stacking"] = "weighted"
    threshold: float = Field(default=0.5, gt=0, lt=1)
    # unset: each member's weight from the catalogue (settings import nothing of the package)
    voting_weights: dict[str, float] | None = None
    online_weight: float = Field(default=0.2, ge=0, le=1)

    batch_max_size: int = Field(default=1024, ge=1)
    batch_max_delay_ms: float = Field(default=5.0, gt=0)
    prices_batch_delay_ms: float = Field(default=100.0, gt=0)
    app_id: str = "apex-stream"
    web_port: int = 6066
    features_ttl_s: float = Field(default=120.0, gt=0)
    outcome_wait_s: float = Field(default=60.0, ge=0)
    scored_capacity: int = Field(default=250_000, ge=1)  # per partition
    commit_interval_s: float = Field(default=1.0, gt=0)
    learner_snapshot_every: int = Field(default=2000, ge=1)

    monitor_features: tuple[str, ...] = (
        "profit_ratio",
        "gas_millions",
        "confidence_score",
        "max_volatility_ewma_bps",
        "min_log_liquidity",
    )
    drift_delta: float = Field(default=0.002, gt=0, lt=1)
    alert_window: int = Field(default=2000, ge=10)
    alert_min_samples: int = Field(default=500, ge=1)
    alert_min_accuracy: float = Field(default=0.6, ge=0, le=1)
    alert_latency_p99_ms: float = Field(default=250.0, gt=0)
    alert_dead_letter_rate: float = Field(default=0.01, ge=0, le=1)
    alert_cooldown_s: float = Field(default=60.0, ge=0)
    metrics_every_s: float = Field(default=5.0, gt=0)
    sink_metrics_port: int = Field(default=9108, ge=0)  # 0: no metrics endpoint

    lifecycle_interval_s: float = Field(default=30.0, gt=0)
    ab_min_samples: int = Field(default=200, ge=1)
    ab_alpha: float = Field(default=0.01, gt=0, lt=1)
    ab_effect_sd: float = Field(default=0.05, gt=0, lt=1)
    retrain_min_samples: int = Field(default=20_000, ge=100)
    retrain_min_interval_s: float = Field(default=6 * 3600.0, ge=0)
    retrain_window: int = Field(default=200_000, ge=100)
    retrain_on_drift: bool = True
    retrain_candidate_traffic: float = Field(default=0.2, gt=0, lt=1)

    bridge_host: str = "127.0.0.1"
    bridge_port: int = 8765
    bridge_token: str | None = None
    bridge_origins: list[str] = []
    bridge_max_clients: int = Field(default=5000, ge=1)
    bridge_client_queue: int = Field(default=20_000, ge=1)
    bridge_max_frame_bytes: int = Field(default=512 * 1024, ge=4096)
    bridge_max_command_bytes: int = Field(default=64 * 1024, ge=256)
    bridge_stall_timeout_s: float = Field(default=30.0, gt=0)
    bridge_command_rate: float = Field(default=20.0, gt=0)
    bridge_heartbeat_s: float = Field(default=5.0, gt=0)
    bridge_coalesce_ms: float = Field(default=5.0, ge=0)
    bridge_replay_max: int = Field(default=10_000, ge=0)

    @property
    def manages_kafka(self) -> bool:
        """True when apex-stream runs its own broker (no KAFKA_BOOTSTRAP_SERVERS given)."""
        return self.kafka_bootstrap_servers is None

    @property
    def manages_postgres(self) -> bool:
        """True when apex-stream runs its own PostgreSQL cluster (no DATABASE_URL given)."""
        return self.database_url is None

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def db_url(self) -> str:
        return self.database_url or f"postgresql+psycopg://apex@127.0.0.1:{self.postgres_port}/apex"

    def topic_name(self, name: str) -> str:
        """The broker-side name of a declared topic (with the configured prefix)."""
        return f"{self.topic_prefix}{name}"


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
