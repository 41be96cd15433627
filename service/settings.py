"""Process settings: environment variables with the ``INTAKE_`` prefix, built once at the edge.

Secrets are ``SecretStr`` and can also come from files (Kubernetes secret volumes): point
``INTAKE_SECRETS_DIR`` at the mounted folder and name each file after the setting, e.g.
``/var/run/secrets/intake/close_api_key``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CLOSE_BASE_URL = "https://api.close.com/api/v1"


class Settings(BaseSettings):
    """Everything a receiver or worker process needs to know, immutable once built."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", frozen=True, extra="ignore")

    env: Literal["dev", "production"] = "production"
    log_level: str = "INFO"

    # Redis: None means "start a private redis-server" (only `lead-intake dev` does that).
    redis_url: str | None = None
    key_prefix: str = Field(default="intake", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    record_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)

    # Close: no API key means "use the built-in emulator" (only `lead-intake dev` does that).
    close_base_url: str = DEFAULT_CLOSE_BASE_URL
    close_api_key: SecretStr | None = None
    close_timeout_seconds: float = Field(default=20.0, gt=0)
    close_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    close_inrequest_attempts: int = Field(default=4, ge=1, le=10)

    sources_file: Path = Path("config/sources.yaml")
    admin_token: SecretStr | None = None

    # Receiver.
    host: str = "0.0.0.0"  # noqa: S104 - a server listens on all interfaces in a container
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Worker.
    worker_concurrency: int = Field(default=16, ge=1, le=1024)
    visibility_timeout_seconds: float = Field(default=60.0, ge=1)
    read_block_ms: int = Field(default=1000, ge=10)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=6 * 3600.0, gt=0)
    retry_max_attempts: int = Field(default=50, ge=1)
    retry_deadline_seconds: float = Field(default=72 * 3600.0, gt=0)
    consumer_name: str | None = None
    schema_refresh_seconds: float = Field(default=600.0, ge=1)

    # Delivery to Close (deduplication, pacing).
    close_rate_limit: float = Field(default=10.0, gt=0)
    """Requests per second per endpoint group, all workers together."""
    close_group_rate_limits: dict[str, float] = Field(default_factory=dict)
    """Per-group ceilings overriding ``close_rate_limit``: read, write, search."""
    identity_lock_seconds: float = Field(default=30.0, ge=1)
    identity_lock_wait_seconds: float = Field(default=15.0, ge=0)
    lead_cache_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    unknown_outcome_grace_seconds: float = Field(default=120.0, ge=0)
    """After a create whose outcome is unknown, how long to wait for Close's search index."""
    auth_probe_seconds: float = Field(default=15.0, gt=0)

    @field_validator("close_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def admin_tokens(self) -> tuple[str, ...]:
        """Accepted admin bearer tokens; several may be given comma-separated for rotation."""
        if self.admin_token is None:
            return ()
        return tuple(t.strip() for t in self.admin_token.get_secret_value().split(",") if t.strip())


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and ``INTAKE_SECRETS_DIR`` files), plus overrides."""
    secrets_dir = os.environ.get("INTAKE_SECRETS_DIR")
    values: dict[str, Any] = dict(overrides)
    if secrets_dir:
        values["_secrets_dir"] = secrets_dir
    return Settings(**values)
