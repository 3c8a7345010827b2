"""Settings (CONTRACT §8): flags, then ``ASSETD_*`` variables, then ``assetd.toml``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from assetd.nats_tls import tls_context
from assetd.schemas.ids import BranchId
from assetd.schemas.limits import Limits

_TOKEN = re.compile(r"[A-Za-z0-9_~/@+-]{1,64}")


class Settings(BaseSettings):
    """Every knob of assetd, shared by the daemon, the client and ``assetctl``."""

    model_config = SettingsConfigDict(
        env_prefix="ASSETD_", toml_file="assetd.toml", extra="ignore", validate_default=True
    )

    nats_url: str | None = Field(default=None, description="None: embedded nats-server")
    nats_creds: Path | None = None
    nats_nkey: Path | None = None
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_token: SecretStr | None = None
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    nats_inbox_prefix: str | None = Field(
        default=None, pattern=r"^_INBOX(\.[A-Za-z0-9_~/@+-]{1,64}){1,6}$",
        description="None: _INBOX.<project>.<user> (see docs/runbook.md, who may do what)")
    embedded_nats_port: int = Field(default=4223, ge=1, le=65535)
    embedded_nats_sync_interval: str = Field(
        default="100ms", pattern=r"^(always|[0-9]+(ms|s|m|h))$",
        description="JetStream fsync policy of the embedded server (see docs/reliability.md)")

    db_url: str | None = Field(default=None, description="None: SQLite under data_dir")
    db_busy_timeout_ms: int = Field(default=5000, ge=0)
    rules: Path | None = None
    rules_poll_interval: float = Field(default=2.0, gt=0)
    outbox_sweep_interval: float = Field(default=1.0, gt=0)
    data_dir: Path = Path(".assetd")
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    http_token: SecretStr | None = Field(
        default=None, description="bearer token of /api/v1; required beyond loopback")
    query_concurrency: int = Field(default=32, ge=1, le=4096,
                                   description="queries one daemon answers at once")
    query_cache: int = Field(
        default=10_000, ge=0, le=10_000_000,
        description="resolve answers kept while the registry does not change (0: none)")
    stream_replicas: int = Field(default=1, ge=1, le=5, description="3 in a NATS cluster")
    max_consumers_per_project: int = Field(
        default=32, ge=1, le=10_000,
        description="durable consumers a project's services may create on ASSETD_OUT_<project>")
    subject_prefix: str = Field(default="assetd", pattern=r"^[A-Za-z0-9_-]{1,32}$")

    project: str | None = None
    branch: BranchId = "main"

    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    max_map_keys: int = Field(default=1000, ge=1, le=100_000,
                              description="keys per annotations/tags/properties/metrics map")
    max_value_chars: int = Field(default=16384, ge=1, description="characters per string value")
    max_inputs: int = Field(default=256, ge=0, le=100_000)
    max_lineage_depth: int = Field(default=20, ge=1, le=50)
    max_lineage_nodes: int = Field(default=10_000, ge=1)
    max_lineage_edges: int = Field(default=50_000, ge=1)
    batch_size: int = Field(default=1000, ge=1, le=10000)
    relay_process: bool = Field(
        default=True, description="publish the outbox from a child process (a second core)")
    fetch_timeout: float = Field(default=2.0, gt=0, description="idle long-poll")
    trace_stages: bool = Field(default=False, description="log each batch's time per stage")
    max_deliver: int = Field(default=10, ge=1)
    ack_wait: float = Field(default=30.0, gt=0)
    nak_delay: float = Field(default=1.0, ge=0)
    graceful_timeout: float = Field(default=30.0, gt=0)
    startup_timeout: float = Field(default=60.0, gt=0, description="JetStream setup retries")
    scheduler_interval: float = Field(default=30.0, gt=0, description="freshness, timeouts")
    lease_ttl: float = Field(default=15.0, gt=0, description="scheduler lease time-to-live")
    pending_timeout: float = Field(default=86400.0, gt=0,
                                   description="pending longer than this → abandoned")
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def effective_nats_url(self) -> str:
        """The URL to connect to: the configured one or the embedded server's."""
        return self.nats_url or f"nats://127.0.0.1:{self.embedded_nats_port}"

    @property
    def nats_servers(self) -> list[str]:
        """The server URLs: ``ASSETD_NATS_URL`` may list several, comma-separated."""
        return [u.strip() for u in self.effective_nats_url.split(",") if u.strip()]

    @property
    def effective_db_url(self) -> str:
        """The registry URL: the configured one or SQLite under the data dir."""
        return self.db_url or f"sqlite:///{self.data_dir / 'registry.db'}"

    def inbox_prefix(self, project: str) -> str:
        """Where this client's replies and deliveries arrive: its own inbox space.

        ``_INBOX.<project>.<user>`` by default, so that a NATS config can allow each user
        its own inbox only, and the daemon answers a project's queries only there."""
        user = self.nats_user if self.nats_user and _TOKEN.fullmatch(self.nats_user) else "client"
        return self.nats_inbox_prefix or f"_INBOX.{project}.{user}"

    def nats_connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` carrying the configured credentials.

        The one place that reads the credential settings: the client passes these to
        nats-py and the daemon maps the same keys onto FastStream's security object
        (:func:`assetd.daemon.security.nats_security`). One credential kind is used, the
        first set of: creds file, nkey seed file, token, user/password; TLS (CA, client
        certificate) goes with any of them."""
        opts: dict[str, Any] = {}
        if self.nats_creds:
            opts["user_credentials"] = str(self.nats_creds)
        elif self.nats_nkey:
            opts["nkeys_seed"] = str(self.nats_nkey)
        elif self.nats_token:
            opts["token"] = self.nats_token.get_secret_value()
        elif self.nats_user:
            opts["user"] = self.nats_user
            if self.nats_password:
                opts["password"] = self.nats_password.get_secret_value()
        if tls := self.nats_tls_files():
            opts["tls"] = tls_context(*tls)
        return opts

    def nats_tls_files(self) -> tuple[str | None, str | None, str | None] | None:
        """``(CA file, client certificate, its key)`` when TLS is configured, else None."""
        if not (self.nats_tls_ca or self.nats_tls_cert):
            return None
        return (str(self.nats_tls_ca) if self.nats_tls_ca else None,
                str(self.nats_tls_cert) if self.nats_tls_cert else None,
                str(self.nats_tls_key) if self.nats_tls_key else None)


def limits(settings: Settings) -> Limits:
    """The inbound data limits in force."""
    return Limits(max_map_keys=settings.max_map_keys, max_value_chars=settings.max_value_chars,
                  max_inputs=settings.max_inputs)


def load_settings(**overrides: Any) -> Settings:
    """Build settings; ``overrides`` (from flags) win, ``None`` values are ignored."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
