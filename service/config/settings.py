"""Process settings: environment variables with the ``INTAKE_`` prefix, built once at the edge.

Secrets are ``SecretStr`` and can also come from files (Kubernetes secret volumes): point
``INTAKE_SECRETS_DIR`` at the mounted folder and name each file after the setting, e.g.
``/var/run/secrets/intake/close_api_key``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.queue.connection import RedisOptions

DEFAULT_CLOSE_BASE_URL = "https://api.close.com/api/v1"
DEFAULT_CLOSE_APP_URL = "https://app.close.com"


class Settings(BaseSettings):
    """Everything a receiver or worker process needs to know, immutable once built."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", frozen=True, extra="ignore")

    env: Literal["dev", "production"] = "production"
    log_level: str = "INFO"
    log_pii: bool = False
    """Write emails and phone numbers into logs unmasked (debugging only)."""
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """``auto``: uvloop when it is installed (it is a dependency on Linux), else asyncio's."""

    # Redis: None means "start a private redis-server" (only `lead-intake dev` does that).
    redis_url: str | None = None
    key_prefix: str = Field(default="intake", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    record_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    ack_replicas: int = Field(default=0, ge=0, le=16)
    """The door answers 2xx only after the submission reached this many Redis replicas
    (``WAIT``), 503 when it did not within ``ack_replica_timeout_seconds``. 0: after the
    master stored it (a failover may lose the last writes)."""
    ack_replica_timeout_seconds: float = Field(default=1.0, gt=0)
    allow_volatile_redis: bool = False
    """In production the door answers 503 while Redis has no persistence (AOF off, no
    snapshots): a restart would lose what it accepted. True accepts anyway."""
    redis_watch_seconds: float = Field(default=5.0, gt=0)
    """How often the receiver checks Redis's data marker and persistence."""
    redis_retry_attempts: int = Field(default=3, ge=0, le=20)
    """How often a Redis command whose connection died (a restart, a failover, a dropped idle
    connection) is sent again on a new one before the caller sees the error (a 503)."""
    redis_retry_backoff_seconds: float = Field(default=0.05, gt=0)
    """The first wait before such a try; it doubles each time (with full jitter)..."""
    redis_retry_backoff_max_seconds: float = Field(default=0.5, gt=0)
    """... up to this."""
    redis_max_connections: int = Field(default=100, ge=2)
    """Connections one process opens to Redis at most (per node of a cluster)."""
    redis_pool_wait_seconds: float = Field(default=5.0, gt=0)
    """While all are busy, how long a command waits for one (then the request fails, 503)."""

    # Close: no API key means "use the built-in emulator" (only `lead-intake dev` does that).
    close_base_url: str = DEFAULT_CLOSE_BASE_URL
    close_api_key: SecretStr | None = None
    close_timeout_seconds: float = Field(default=20.0, gt=0)
    close_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    close_inrequest_attempts: int = Field(default=4, ge=1, le=10)
    close_app_url: str = DEFAULT_CLOSE_APP_URL
    """Close's web app: a lead's page is ``<close_app_url>/lead/<id>/`` (the dashboard's and the
    admin API's lead links when Close gave no URL). `lead-intake dev` points it at the emulator."""

    sources_file: Path = Path("config/sources.yaml")
    admin_token: SecretStr | None = None
    admin_session_seconds: int = Field(default=12 * 3600, ge=60)
    """A dashboard session ends this long after login (or at logout, on every replica)."""
    admin_login_attempts: int = Field(default=10, ge=1)
    """Wrong admin tokens (dashboard login, API bearer) one client may send per window..."""
    admin_login_window_seconds: float = Field(default=600.0, gt=0)
    """... after which it is refused (429) until the bucket refills."""

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
    worker_http_port: int = Field(default=9100, ge=0, le=65535)
    """The worker's HTTP port (``/healthz``); 0 turns it off."""
    drain_seconds: float = Field(default=2.0, ge=0)
    """Receiver, on SIGTERM: how long /readyz fails before the listener closes."""
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    """On SIGTERM, how long in-flight submissions may finish before they are cancelled."""
    schema_refresh_seconds: float = Field(default=600.0, ge=1)

    # Delivery to Close (deduplication, pacing).
    close_rate_limit: float = Field(default=10.0, gt=0)
    """Requests per second per endpoint group, all workers together."""
    close_group_rate_limits: dict[str, float] = Field(default_factory=dict)
    """Per-group ceilings overriding ``close_rate_limit``: read, write, activity, task,
    opportunity, sequence, search."""
    identity_lock_seconds: float = Field(default=30.0, ge=1)
    identity_lock_wait_seconds: float = Field(default=15.0, ge=0)
    lead_cache_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    unknown_outcome_grace_seconds: float = Field(default=120.0, ge=0)
    """After a create whose outcome is unknown, how long to wait for Close's search index
    when Close's event log cannot be read (the fallback; service/worker/unknown.py)."""
    event_log_lag_seconds: float = Field(default=5.0, ge=0)
    """After a create whose outcome is unknown, how long after its mark Close's event log is
    trusted to show the lead it made: with nothing there by then (nor in the search), the
    lead is created again."""
    auth_probe_seconds: float = Field(default=15.0, gt=0)

    # Follow-ups (a source's `followup:` section).
    owner_turns_ttl_seconds: int = Field(default=90 * 24 * 3600, ge=3600)
    """How long a round-robin pool's counter is kept after its last turn (then it starts over)."""
    close_clock_skew_seconds: float = Field(default=5.0, ge=0)
    """How far Close's clock may be behind ours: a follow-up whose answer was lost is looked
    for among the objects Close made since its step began, less this. The person's earlier
    submissions made theirs before; one made within this window with the same values could be
    taken for it."""

    # `lead-intake dev` (make run) only.
    emulator_port: int = Field(default=8081, ge=0, le=65535)
    """The built-in Close emulator's port while no API key is set (0: any free port)."""
    emulator_org_file: Path = Path("config/emulator-org.yaml")
    """The emulated organisation (users, lead statuses, custom fields): see
    docs/operations.md. ``check-config`` without an API key checks sources against it."""
    provider_emulator_port: int = Field(default=8082, ge=0, le=65535)
    """The built-in provider emulator's port (Meta Graph, HubSpot CRM, Calendly) while no Close
    API key is set (0: any free port)."""

    # Hydration: fetching the person a thin provider payload names (config/hydration.py).
    meta_graph_url: str = "https://graph.facebook.com/v25.0"
    """The Graph API, with its version (leads are read at ``<url>/<leadgen_id>``)."""
    hubspot_api_url: str = "https://api.hubapi.com"
    calendly_api_url: str = "https://api.calendly.com"
    """Calendly's API: a submitter URI is fetched only when it is under this address (the
    payload names the URL; nothing else is ever sent the token)."""
    hydration_timeout_seconds: float = Field(default=10.0, gt=0)
    hydration_inrequest_attempts: int = Field(default=3, ge=1, le=10)
    """Tries of one fetch within an attempt (timeouts, connection errors, 5xx)."""
    hydration_not_found_retries: int = Field(default=3, ge=0, le=50)
    """Attempts at a person the provider says does not exist before the submission ends
    ``dead`` (a webhook can arrive before the person is readable)."""
    hydration_probe_seconds: float = Field(default=30.0, gt=0)
    """While a provider refuses a source's token, how often one submission tries again."""
    provider_emulator_token: SecretStr | None = None
    """Set by ``lead-intake dev`` when the provider emulator stands in: the token of every
    hydrating source whose own token is not set."""

    @field_validator(
        "close_base_url", "close_app_url", "meta_graph_url", "hubspot_api_url", "calendly_api_url"
    )
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def lead_url_template(self) -> str:
        """A lead's page in Close, ``{}`` standing for the lead id."""
        return self.close_app_url + "/lead/{}/"

    @property
    def redis_options(self) -> RedisOptions:
        return RedisOptions(
            attempts=self.redis_retry_attempts,
            backoff_seconds=self.redis_retry_backoff_seconds,
            backoff_max_seconds=self.redis_retry_backoff_max_seconds,
            max_connections=self.redis_max_connections,
            pool_wait_seconds=self.redis_pool_wait_seconds,
        )

    @property
    def admin_tokens(self) -> tuple[str, ...]:
        """Accepted admin bearer tokens; several may be given comma-separated for rotation."""
        if self.admin_token is None:
            return ()
        return tuple(t.strip() for t in self.admin_token.get_secret_value().split(",") if t.strip())

    # Door: what the receiver checks before it accepts a submission.
    trusted_proxies: str = ""
    """Comma-separated networks (CIDR) of the proxies / load balancers in front of the
    receiver; only a peer in them is believed about ``X-Forwarded-For``. Empty: the peer is
    the client."""
    header_timeout_seconds: float = Field(default=75.0, gt=0)
    """A connection must send its request line and headers within this time (after it opens,
    or after the previous answer); also how long an idle keep-alive connection stays open."""
    read_timeout_seconds: float = Field(default=30.0, gt=0)
    """The whole body must arrive within this time once the headers are in (else 408)."""
    turnstile_verify_url: str = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    hcaptcha_verify_url: str = "https://api.hcaptcha.com/siteverify"
    recaptcha_verify_url: str = "https://www.google.com/recaptcha/api/siteverify"
    captcha_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                try:
                    ipaddress.ip_network(item.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{item.strip()!r} is not an IP network (CIDR)") from None
        return value

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(item.strip(), strict=False)
            for item in self.trusted_proxies.split(",")
            if item.strip()
        )


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment, plus secret files, plus overrides.

    With ``INTAKE_SECRETS_DIR`` set, a file in that folder named after a setting without the
    prefix (``close_api_key``, ``admin_token``, as a Kubernetes Secret volume mounts them) gives
    that setting's value, unless the ``INTAKE_`` environment variable is set too (it wins).
    """
    values: dict[str, Any] = {}
    secrets_dir = os.environ.get("INTAKE_SECRETS_DIR")
    if secrets_dir:
        folder = Path(secrets_dir)
        for name in Settings.model_fields:
            path = folder / name
            if f"INTAKE_{name.upper()}" not in os.environ and path.is_file():
                values[name] = path.read_text(encoding="utf-8").strip()
    values.update(overrides)
    return Settings(**values)
