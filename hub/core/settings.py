"""Hub settings: a TOML file (--config or ATELIER_CONFIG) and ATELIER_* environment variables."""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from protocol.topics import SLUG_PATTERN

_CONFIG_PATH: contextvars.ContextVar[Path | None] = contextvars.ContextVar("config", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATELIER_", extra="forbid")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("atelier-data")
    database_url: str = ""  # empty: SQLite in data_dir
    site: str = Field(default="lab", pattern=SLUG_PATTERN)
    timezone: str = "Europe/Paris"

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    mqtt_client_id: str = "atelier-hub"
    mqtt_tls_ca: Path | None = None
    # Adding a machine (`atelier hub machine add`, the web's "Add a machine"): the broker as
    # agents reach it (host:port; default mqtt_host:mqtt_port), the lab CA's path on each Pi,
    # where agents' passwords are kept, and the broker files written again, then reloaded with
    # mqtt_reload_command (e.g. "systemctl reload mosquitto"), when both files are given.
    agent_broker: str | None = None
    agent_tls_ca: str = "/etc/atelier/ca.crt"
    mqtt_secrets_dir: Path = Path("/etc/atelier/agents")
    mqtt_password_file: Path | None = None
    mqtt_acl_file: Path | None = None
    mqtt_reload_command: str | None = None

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)

    # Whether members see who is using a machine (the dashboard, its live stream and the
    # machines API); off, a member sees "in use" (and their own name), staff see the name.
    members_see_who_uses_machines: bool = False

    # Energy (issue 21): the price of a kWh, if the lab bills energy (None: it does not), and
    # the emission factor of its electricity for the CO2e estimates (default: the French grid,
    # hub.domain.energy.FRENCH_GRID_CO2E_SOURCE).
    energy_cents_per_kwh: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    energy_co2e_kg_per_kwh: float = Field(default=0.052, ge=0, le=10, allow_inf_nan=False)

    allowlist_ttl_hours: float = Field(default=168, gt=0)
    telemetry_raw_hours: float = Field(default=24, gt=0)
    telemetry_downsample_s: int = Field(default=60, ge=1)
    telemetry_keep_days: float = Field(default=90, gt=0, le=36_500)
    # Events are the raw history (sessions, busy periods and jobs are kept apart from them);
    # None keeps them for good. Admins may change both from the API or the CLI.
    event_keep_days: float | None = Field(default=None, ge=30, le=36_500)
    dead_letter_keep_days: float | None = Field(default=180, ge=1, le=36_500)
    # CNIL guidance for access control at work: raw badge reads and refusals are kept at most
    # three months (90 days); None keeps them as the other events are.
    badge_event_keep_days: float | None = Field(default=90, ge=1, le=36_500)
    # Billed sessions name their member for the accounting year and the months its accounts
    # take to be approved (18 months), then carry a pseudonym instead; None never.
    session_pseudonymise_days: float | None = Field(default=548, ge=30, le=36_500)

    # With extra `atelier hub ingest --shared GROUP` workers, the hub's own ingest joins the
    # same MQTT 5 shared subscription, so each event goes to one of them only.
    ingest_shared_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # How often the hub looks for overdue critical maintenance (and locks those machines).
    maintenance_check_s: float = Field(default=300, ge=5)
    ingest_batch_max: int = Field(default=500, ge=1, le=10_000)
    ingest_batch_ms: int = Field(default=50, ge=1, le=5_000)
    # /health answers 503 once the oldest message not yet stored has waited this long
    # (a stalled writer, a database that is away, a flood the hub cannot keep up with).
    ingest_max_lag_s: float = Field(default=60, gt=0, le=86_400)

    @field_validator("agent_broker")
    @classmethod
    def _agent_broker(cls, value: str | None) -> str | None:
        host, _, port = (value or "").rpartition(":")
        if value is not None and not (
            host and port.isdigit() and 1 <= int(port) <= 65535 and host.isprintable()
            and not any(c in host for c in " /:")
        ):  # fmt: skip
            raise ValueError(
                f"{value!r}: give the broker as the Pis reach it, host:port, "
                "e.g. hub.fablab.lan:8883"
            )
        return value

    # Notifications (docs/notifications.md). No smtp_host: no email is sent (they wait).
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    # A secret: from ATELIER_SMTP_PASSWORD or systemd's credentials, never logged or shown.
    smtp_password: SecretStr | None = None
    smtp_from: str = "atelier@localhost"
    smtp_ca_file: Path | None = None
    notify_language: Literal["en", "fr"] = "en"
    # machine code -> its camera's snapshot address (OctoPrint: the webcam "snapshot URL"):
    # a print's email carries the picture taken when it is sent.
    notify_snapshot_urls: dict[str, str] = {}
    # A worker killed while sending holds its messages this long; then they go again.
    notify_lease_s: float = Field(default=120, ge=1, le=86_400)
    notify_poll_s: float = Field(default=2, gt=0, le=3_600)
    notify_backoff_s: float = Field(default=30, gt=0, le=86_400)
    notify_max_attempts: int = Field(default=8, ge=1, le=100)
    # Home Assistant MQTT discovery (docs/notifications.md); the member's reference is shown
    # only when homeassistant_personal_data is on.
    homeassistant_discovery: bool = False
    homeassistant_prefix: str = Field(default="homeassistant", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    homeassistant_personal_data: bool = False
    # How often the hub looks for expiring trainings, silent machines and refused messages;
    # a machine silent this long is told to staff; so are this many dead letters in an hour.
    notify_watch_s: float = Field(default=300, ge=5, le=86_400)
    notify_offline_after_s: float = Field(default=1800, ge=60, le=30 * 86_400)
    notify_dead_letters_per_hour: int = Field(default=20, ge=1, le=1_000_000)
    # A prepaid balance at or below this (in cents) is "low" for its member.
    notify_low_balance_cents: int = Field(default=500, ge=0, le=10_000_000)
    # Emails to one address an hour; more wait and go together in one digest.
    notify_rate_per_hour: int = Field(default=6, ge=1, le=1_000)

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'atelier.db'}"
        for machine, url in self.notify_snapshot_urls.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"notify_snapshot_urls.{machine}: give an http:// or https:// address"
                )
        if self.ingest_shared_group and self.mqtt_protocol != "5":
            raise ValueError(
                'ingest_shared_group needs mqtt_protocol = "5" (MQTT 5 shared subscriptions)'
            )
        if self.environment == "production" and self.mqtt_username and not self.mqtt_password:
            raise ValueError("mqtt_password must be set in production when mqtt_username is")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_PATH.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


class SettingsError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def get_settings(config_path: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file (if any) and the environment; SettingsError names the field."""
    path = config_path or os.environ.get("ATELIER_CONFIG") or None
    if path is not None and not Path(path).exists():
        raise SettingsError([f"config file {path} does not exist"])
    token = _CONFIG_PATH.set(Path(path) if path else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            if err["type"] == "extra_forbidden":
                errors.append(f"{where}: unknown setting (check the spelling)")
            else:
                errors.append(f"{where}: {err['msg']}")
        raise SettingsError(errors) from None
    finally:
        _CONFIG_PATH.reset(token)
