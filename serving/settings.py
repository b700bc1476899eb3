"""Typed configuration, read once from the environment (prefix ``CARTWISE_``) or a .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARTWISE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(Path("var"), description="Where SQLite, models and logs live.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means a SQLite file under data_dir."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Online feature store.")
    redis_timeout_ms: int = Field(20, ge=1, description="Socket timeout of feature reads.")
    redis_bulk_timeout_ms: int = Field(
        2000, ge=1, description="Socket timeout of batch writes (ingestion, rebuild)."
    )
    feature_backlog: int = Field(
        100_000,
        ge=0,
        description="Online-store writes kept per process while Redis is unreachable, replayed "
        "when it answers (0: none kept).",
    )
    max_inflight: int = Field(
        256, ge=1, description="Requests a process serves at once; beyond it, 503 at once."
    )
    max_loop_lag_ms: float = Field(
        20.0,
        ge=0,
        description="Refuse new requests (503, Retry-After) while the event loop runs this late "
        "(a process past its capacity); 0: never on lag.",
    )
    http_host: str = Field("127.0.0.1", description="Address the HTTP API binds to.")
    http_port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP API.")
    admin_token: SecretStr = Field(
        SecretStr(""), description="Bearer token for admin endpoints (empty: admin disabled)."
    )
    channel_keys: Literal["required", "off"] = Field(
        "required",
        description="required: storefront routes need a channel's publishable or secret key, "
        "checkout routes its secret key (the admin token is accepted everywhere); off: no "
        "keys, for an API that only a private network can reach.",
    )
    replicas: int = Field(1, ge=1, description="Ray Serve replicas of the API deployment.")
    replica_cpus: float = Field(0.5, gt=0, le=8, description="CPUs reserved per replica.")
    ray_address: str = Field("local", description="'local' starts Ray in-process; or host:port.")
    ingress: Literal["haproxy", "proxy"] = Field(
        "haproxy",
        description="haproxy: HAProxy on the HTTP port forwards straight to replicas' own HTTP "
        "servers (Serve's direct ingress); proxy: Serve's Python HTTP proxy actor.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Storefront origins allowed to call the API from a browser (the widget "
        'on a shop\'s own domain), e.g. ["https://shop.example"]; empty: same origin only.',
    )
    log_level: str = Field("INFO")
    mlflow_tracking_uri: str = Field(
        "",
        description="MLflow tracking/registry URI; empty means SQLite under data_dir.",
        # CARTWISE_MLFLOW_URI: the name it had before, still read
        validation_alias=AliasChoices(
            "mlflow_tracking_uri", "CARTWISE_MLFLOW_TRACKING_URI", "CARTWISE_MLFLOW_URI"
        ),
    )
    fraud_model_name: str = Field("cartwise-fraud", description="Registered fraud model name.")
    recs_model_name: str = Field("cartwise-recs", description="Registered recommender name.")
    pricing_model_name: str = Field(
        "cartwise-pricing", description="Registered elasticity model (fit) name."
    )
    model_poll_s: float = Field(
        5.0,
        ge=0,
        description="How often a replica asks the registry where the aliases point (a "
        "promotion, a rollback, a challenger's rollout) and swaps models; 0: only at start.",
    )
    recs_model: str = Field(
        "champion",
        description="Recommender to serve: a registry alias, a version, or a model directory.",
    )
    fraud_model: str = Field(
        "champion",
        description="Fraud model to serve: a registry alias, a version, or a model directory.",
    )
    base_currency: str = Field(
        "EUR", pattern=r"^[A-Z]{3}$", description="Currency the FX table's rates are against."
    )
    quote_ttl_s: int = Field(900, ge=1, description="How long a price quote is honoured.")
    reprice_every_s: int = Field(
        0,
        ge=0,
        description="Reprice every N seconds (one replica per interval); 0: on demand only.",
    )
    competitor_ttl_s: int = Field(
        2 * 86_400, ge=60, description="How long a competitor's observed price counts."
    )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cartwise.db').resolve()}"

    def resolved_mlflow_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    def mlflow_artifacts(self) -> Path:
        """Where a local registry keeps model files (runs' artifacts)."""
        return (self.data_dir / "mlartifacts").resolve()
