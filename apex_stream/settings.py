"""One frozen settings object, read from environment variables (12-factor).

Standard names stay standard (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``); everything else is
``APEX_*``. When the two service URLs are unset, ``apex-stream up`` runs local services and the
defaults below point at them.

The systems apex-stream replaces (``../shared/seeds``) named some of the same knobs otherwise;
their names are honoured as aliases (:data:`SEED_ALIASES`), refused with the variable to set
instead where the meaning differs (:data:`SEED_REFUSED`), and reported as ignored where apex-stream
has no such knob (:data:`SEED_IGNORED`): a seed's ``.env`` is never silently half-applied.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ApexStreamError
from .resources import TOPICS

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("apex_stream.settings")

#: Seed systems' names for knobs apex-stream has: field -> (our variable, the seeds' names).
SEED_ALIASES: dict[str, tuple[str, ...]] = {
    "threshold": ("APEX_THRESHOLD", "AI_THRESHOLD", "ML_THRESHOLD", "ML_CONFIDENCE_THRESHOLD"),
    "device": ("APEX_DEVICE", "ML_USE_GPU"),
    "live_trading": ("APEX_LIVE_TRADING", "LIVE_TRADING"),
    "web_port": ("APEX_WEB_PORT", "AI_ENGINE_PORT"),
    "models_dir": ("APEX_MODELS_DIR", "ML_MODELS_PATH"),
    "database_url": ("DATABASE_URL", "TIMESERIES_CONNECTION_STRING"),
}
#: Seed names whose meaning apex-stream cannot take over as is: the reason and what to set.
SEED_REFUSED: dict[str, str] = {
    name: (
        "names one model file; apex-stream serves every model through the manifest in "
        "APEX_MODELS_DIR: register the file with `apex-stream models register` and unset " + name
    )
    for name in ("AI_MODEL_PATH", "MODEL_PATH")
}
#: Seed names for knobs apex-stream does not have (no Redis cache, no trade execution, training
#: settings of other pipelines); set, they are reported once and ignored.
SEED_IGNORED = (
    "REDIS_HOST",
    "REDIS_PORT",
    "PROMETHEUS_PORT",
    "RUST_ENGINE_URL",
    "ML_TIMEOUT",
    "ML_DATA_COLLECTION_ENABLED",
    "ML_DATA_INTERVAL",
    "ML_LSTM_ENABLED",
    "ML_SCORER_ENABLED",
    "ML_VOLATILITY_ENABLED",
    "TRAINING_DAYS",
    "REVERSION_THRESHOLD",
    "LOOKHEAD_SECONDS",
)


class SettingsError(ApexStreamError):
    """Environment variables that contradict each other or cannot be honoured."""


def _env(field: str, default: Any, **constraints: Any) -> Any:
    """A field read from our variable or, failing that, the seeds' names for it."""
    return Field(default, validation_alias=AliasChoices(*SEED_ALIASES[field]), **constraints)


class Settings(BaseSettings):
    """Every knob apex-stream reads; see the table in README.md."""

    model_config = SettingsConfigDict(
        env_prefix="APEX_", frozen=True, extra="ignore", populate_by_name=True
    )

    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: str | None = _env("database_url", None)
    # TimescaleDB hypertables or plain PostgreSQL tables for a new schema (sink/storage.py)
    storage: Literal["auto", "timescaledb", "postgresql"] = "auto"

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

    models_dir: Path = _env("models_dir", ROOT / "models")
    device: Literal["auto", "cpu", "cuda"] = _env("device", "auto")
    onnx_threads: int = Field(default=1, ge=1)
    xgboost_threads: int = Field(default=1, ge=1)
    # stacking: the logistic meta-learner of the manifest, measured best calibrated (README)
    voting_strategy: Literal["weighted", "majority", "unanimous", "stacking"] = "stacking"
    threshold: float = _env("threshold", 0.5, gt=0, lt=1)
    # unset: each member's weight from the catalogue (settings import nothing of the package)
    voting_weights: dict[str, float] | None = None
    online_weight: float = Field(default=0.2, ge=0, le=1)
    # "expected_profit": execute when score x quoted profit beats (1 - score) x quoted gas by
    # more than min_expected_profit_usd (apex_stream/inference/decision.py)
    decision_rule: Literal["threshold", "expected_profit"] = "threshold"
    min_expected_profit_usd: float = Field(default=0.0, ge=0)

    batch_max_size: int = Field(default=1024, ge=1)
    batch_max_delay_ms: float = Field(default=5.0, gt=0)
    prices_batch_delay_ms: float = Field(default=100.0, gt=0)
    app_id: str = "apex-stream"
    #: the worker's HTTP API: seed 000's port, on loopback unless told otherwise
    web_host: str = "127.0.0.1"
    web_port: int = _env("web_port", 8000)
    # when set, scoring and model routes need this bearer token (an empty one is refused)
    api_token: str | None = Field(default=None, min_length=1)
    live_trading: bool = _env("live_trading", False)  # reported (seed 002's mode); nothing executes
    features_ttl_s: float = Field(default=120.0, gt=0)
    outcome_wait_s: float = Field(default=60.0, ge=0)
    scored_capacity: int = Field(default=250_000, ge=1)  # per partition
    commit_interval_s: float = Field(default=1.0, gt=0)
    # /health calls a consumer lag growing once it rose sample after sample (every 5 s) over
    # this long and stands at this many records or more
    health_lag_floor: int = Field(default=10_000, ge=0)
    health_lag_window_s: float = Field(default=30.0, gt=0)
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
    #: /health stays degraded this long after a member last failed to score
    health_window_s: float = Field(default=60.0, gt=0)
    sink_metrics_port: int = Field(default=9108, ge=0)  # 0: no metrics endpoint

    lifecycle_interval_s: float = Field(default=30.0, gt=0)
    ab_min_samples: int = Field(default=200, ge=1)
    ab_alpha: float = Field(default=0.01, gt=0, lt=1)
    ab_effect_sd: float = Field(default=0.05, gt=0, lt=1)
    # the same under the expected-profit rule, which compares profit per opportunity (USD)
    ab_profit_effect_sd_usd: float = Field(default=0.5, gt=0)
    retrain_min_samples: int = Field(default=20_000, ge=100)
    retrain_min_interval_s: float = Field(default=6 * 3600.0, ge=0)
    retrain_window: int = Field(default=200_000, ge=100)
    retrain_on_drift: bool = True
    retrain_candidate_traffic: float = Field(default=0.2, gt=0, lt=1)
    # the retrain gate: how much worse than the active version a candidate may be on held-out data
    retrain_auc_margin: float = Field(default=0.005, ge=0, lt=1)
    retrain_logloss_margin: float = Field(default=0.005, ge=0)

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

    @field_validator("device", mode="before")
    @classmethod
    def _use_gpu(cls, value: Any) -> Any:
        """Seed 001's ``ML_USE_GPU=true|false`` means cuda or cpu."""
        flags = {"true": "cuda", "1": "cuda", "false": "cpu", "0": "cpu"}
        return flags.get(value.lower(), value) if isinstance(value, str) else value

    @field_validator("database_url", mode="after")
    @classmethod
    def _driver(cls, value: str | None) -> str | None:
        """Seed 001's ``postgresql://`` URL, with the driver apex-stream uses (psycopg 3)."""
        if value is not None and value.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

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


def check_seed_names(environ: Mapping[str, str]) -> list[str]:
    """Refuse seed variables that cannot be honoured or that contradict another name of the same
    knob (:class:`SettingsError`); the notes to log about seed variables that are ignored."""
    environ = {name.upper(): value for name, value in environ.items()}  # as pydantic reads them
    problems = [f"{name} {reason}" for name, reason in SEED_REFUSED.items() if name in environ]
    for names in SEED_ALIASES.values():
        given = {name: environ[name] for name in names if name in environ}
        if len({_same(value) for value in given.values()}) > 1:
            problems.append(
                f"{', '.join(f'{k}={v}' for k, v in given.items())} disagree: they set one "
                f"knob; keep {names[0]} only"
            )
    if problems:
        raise SettingsError("; ".join(problems))
    return [
        f"{name} is set but apex-stream has no such setting (README 'Settings from the seed "
        "systems'); ignored"
        for name in SEED_IGNORED
        if name in environ
    ]


def _same(value: str) -> str:
    """A value as a knob reads it: ``0.8`` and ``0.80`` agree, ``True`` and ``true`` too."""
    try:
        return repr(float(value))
    except ValueError:
        return value.strip().lower()


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once (seed names checked first)."""
    for note in check_seed_names(os.environ):
        log.warning(note)
    return Settings()
