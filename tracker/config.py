"""Settings read from ``BATON_*`` environment variables, with working defaults for the embedded mode."""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATON_", env_file=None, extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///./var/baton.db",
        description="SQLite (embedded default) or postgresql+asyncpg:// / postgresql+psycopg://",
    )
    public_base_url: str | None = Field(
        default=None,
        description="Public URL as partners see it; @target-uri is rebuilt from it behind proxies.",
    )
    secret_key: str = Field(default="", description="Signs console sessions; generated per process if empty.")
    admin_token: str | None = None

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_api_base: str | None = None

    smtp_url: str | None = None
    email_from: str = "Baton <baton@localhost>"
    supervisors_email: str | None = None

    coalesce_seconds: int = Field(default=600, ge=0, description="Customer triggers within this window merge.")
    quiet_hours: str = Field(default="21:00-08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$",
                             description="No SMS in the customer's time zone during these hours.")
    sms_daily_cap: int = Field(default=6, ge=1, description="SMS per case per customer-local day.")
    dispatch_lease_seconds: float = Field(
        default=120.0, gt=0,
        description="How long a dispatcher's claim on outbox rows lasts; rows of a process that died mid-batch "
                    "are sent again after it.",
    )

    workers_in_process: bool | None = Field(
        default=None, description="Run watchdog and dispatcher in the web process (default: on for SQLite)."
    )
    signature_max_skew_seconds: int = 300
    max_body_bytes: int = 64 * 1024
    db_pool_size: int = 20
    log_level: str = "INFO"

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def run_workers_in_process(self) -> bool:
        return self.is_sqlite if self.workers_in_process is None else self.workers_in_process

    def quiet_window(self) -> tuple[dt.time, dt.time]:
        start, _, end = self.quiet_hours.partition("-")
        return dt.time.fromisoformat(start), dt.time.fromisoformat(end)

    def callback_base_url(self) -> str:
        """Where Twilio reaches Baton's hooks: the public URL, else the default local address."""
        return self.public_base_url or "http://127.0.0.1:8000"

    def effective_secret_key(self) -> str:
        return self.secret_key or _process_secret()

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        _, _, path = self.database_url.partition(":///")
        return Path(path) if path and path != ":memory:" else None


@functools.cache
def _process_secret() -> str:
    return secrets.token_urlsafe(32)


@functools.cache
def get_settings() -> Settings:
    return Settings()
