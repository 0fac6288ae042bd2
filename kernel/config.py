"""Settings read from ``BATON_*`` environment variables, with working defaults for the embedded mode."""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from pathlib import Path
from typing import Annotated, Literal

from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The staff roles, lowest first (``tracker.principals.ROLES`` is this list): BATON_OIDC_ROLE_MAP is
# checked against it when the settings are read, long before the first sign-in.
STAFF_ROLES = ("agent", "supervisor", "admin")
# What a provider may be reached over plain http at: only this machine (a local provider in tests).
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


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
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed; "
                    "from any other peer the connection's own address is the client's (rate limits key on it).",
    )
    allowed_hosts: str = Field(
        default="127.0.0.1,localhost,[::1]",
        description="Comma-separated Host header values served (ports ignored) besides the public URL's host; "
                    "any other Host is refused with 400. /healthz and /readyz answer whatever the Host.",
    )
    secret_key: str = Field(default="", description="Signs console sessions; generated per process if empty.")
    admin_token: str | None = None

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_api_base: str | None = None
    twilio_whatsapp_from: str | None = Field(
        default=None, description="WhatsApp sender through the same Twilio account, e.g. whatsapp:+14155238886.")
    whatsapp_templates: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='Approved WhatsApp templates (ContentSid) per message kind and locale, as JSON: '
                    '{"update": {"en": "HX...", "de": "HX..."}, "opened": {...}}. Variables: '
                    '{"1": reference, "2": status in the customer\'s words, "3": status link}.')

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

    webhook_allow_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated host names or addresses exempt from the public-https rule for webhook URLs "
                    "(local development and tests; plain http allowed for them).",
    )
    webhook_deadline_seconds: float = Field(
        default=10.0, gt=0,
        description="Total time one webhook delivery may take: resolving, connecting, sending and reading the answer.",
    )
    webhook_max_answer_bytes: int = Field(
        default=4096, ge=0, description="How much of a webhook receiver's answer body is read before hanging up.",
    )
    webhook_concurrency: int = Field(
        default=16, ge=1, description="Webhook deliveries in flight at once per worker, in their own lane.",
    )

    workers_in_process: bool | None = Field(
        default=None, description="Run watchdog and dispatcher in the web process (default: on for SQLite)."
    )
    min_cadence: str = Field(default="PT15M", pattern=r"^P", description="No party's cadence may be shorter (ISO 8601).")
    partner_cases_per_hour: int = Field(default=500, ge=1, description="Cases one partner may open per hour.")
    partner_customer_messages_per_hour: int = Field(
        default=1000, ge=1, description="Customer-visible updates one partner may cause per hour.")
    sms_countries: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Comma-separated ISO 3166 country codes SMS may go to (empty: any); "
                                "other numbers get email only, against SMS pumping.")
    signature_max_skew_seconds: int = 300
    signature_max_future_seconds: int = Field(
        default=60, ge=0, description="How far ahead of the server clock a signature's 'created' may lie "
                                      "(the past is bounded by signature_max_skew_seconds).",
    )
    max_body_bytes: int = 64 * 1024
    scans_max_bytes: int = Field(
        default=4 * 1024 * 1024, ge=64 * 1024,
        description="Largest body of POST /v1/scans (10,000 scans as CSV are about 0.7 MiB).",
    )
    attachment_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024,
        description="Largest file on the attachment and delivery-proof routes (every other body: max_body_bytes).",
    )
    storage_url: str = Field(
        default="file:./var/attachments", pattern=r"^(file:|s3://)",
        description="Where attachment files live, by digest: file:<folder> or s3://bucket/prefix "
                    "(credentials from the usual AWS_* variables).",
    )
    sdr_rates: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Comma-separated CURRENCY=rate pairs, the value of one SDR (special drawing right) "
                                "in that currency, e.g. EUR=1.21,USD=1.34: the liability cap is shown converted. "
                                "Never fetched at run time.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="An S3-compatible store's endpoint (default: AWS's for the region).",
    )
    db_pool_size: int = 20
    group_commit: bool = Field(
        default=True, description="Concurrent signed updates of one process share one transaction (tracker.groupcommit).",
    )
    group_commit_max: int = Field(default=64, ge=1, le=1024, description="At most this many updates per transaction.")
    group_commit_lanes: int = Field(
        default=1, ge=1, le=8, description="Transactions group commit may have open at once, per process.",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="Staff single sign-on: the OpenID Connect provider's issuer URL (its discovery document is "
                    "{issuer}/.well-known/openid-configuration). Unset: the console signs in with tokens only.",
    )
    oidc_client_id: str | None = Field(default=None, description="Baton's client id at the provider.")
    oidc_client_secret: str | None = Field(default=None, description="Baton's client secret at the provider.")
    oidc_role_claim: str = Field(
        default="baton_role", min_length=1,
        description="The ID token claim that gives the staff role: a string or a list (such as groups); "
                    "a dotted path reaches into an object (realm_access.roles).",
    )
    oidc_role_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Comma-separated claim-value=role pairs, e.g. baton-agents=agent,baton-admins=admin. "
                    "Empty: the claim's values are the role names themselves (agent, supervisor, admin).",
    )
    oidc_scopes: str = Field(default="openid email profile", description="Scopes asked of the provider.")
    oidc_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 7, description="How long a console session signed in through the provider lasts.",
    )

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="Log lines as JSON or readable text; auto: text on a terminal, JSON otherwise.",
    )

    @field_validator("sdr_rates")
    @classmethod
    def _rates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import re
        from decimal import Decimal, InvalidOperation

        for pair in value:
            currency, _, rate = pair.partition("=")
            try:
                ok = re.fullmatch(r"[A-Z]{3}", currency) is not None and Decimal(rate) > 0
            except InvalidOperation:
                ok = False
            if not ok:
                raise ValueError(f"BATON_SDR_RATES: {pair!r} is not CURRENCY=rate, e.g. EUR=1.21")
        return value

    @field_validator("webhook_allow_hosts", "sms_countries", "sdr_rates", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("sms_countries")
    @classmethod
    def _countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(code.upper() for code in value)

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("min_cadence")
    @classmethod
    def _cadence(cls, value: str) -> str:
        from kernel.durations import parse_duration

        parse_duration(value)  # fail at start-up, naming BATON_MIN_CADENCE, not at the first case
        return value

    @field_validator("oidc_issuer", "oidc_client_id", "oidc_client_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # BATON_OIDC_ISSUER= in an env file means "not configured", not "configured as nothing".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("oidc_role_map", mode="before")
    @classmethod
    def _role_map(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        roles: dict[str, str] = {}
        for pair in (item.strip() for item in value.split(",")):
            if not pair:
                continue
            claim_value, _, role = (part.strip() for part in pair.rpartition("="))
            if not claim_value or role not in STAFF_ROLES:
                raise ValueError(f"BATON_OIDC_ROLE_MAP: {pair!r} is not value=role with a role among "
                                 f"{', '.join(STAFF_ROLES)}, e.g. baton-agents=agent")
            roles[claim_value] = role
        return roles

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        """Single sign-on is all three of issuer, client id and secret, or none: fail at start-up naming what is missing."""
        given = {"BATON_OIDC_ISSUER": self.oidc_issuer, "BATON_OIDC_CLIENT_ID": self.oidc_client_id,
                 "BATON_OIDC_CLIENT_SECRET": self.oidc_client_secret}
        missing = [name for name, value in given.items() if value is None]
        if missing and len(missing) < len(given):
            raise ValueError(f"single sign-on is half-configured: {', '.join(missing)} missing "
                             f"(set all of {', '.join(given)}, or none)")
        if self.oidc_issuer is not None:
            parts = urlsplit(self.oidc_issuer)
            local = parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
            if not (parts.scheme == "https" or local) or not parts.hostname or parts.query or parts.fragment:
                raise ValueError(f"BATON_OIDC_ISSUER: {self.oidc_issuer!r} must be an https URL without query or "
                                 "fragment (plain http only for a provider on this machine)")
        for claim_value, role in self.oidc_role_map.items():
            if role not in STAFF_ROLES:  # a map given as a dict, not parsed from the environment
                raise ValueError(f"BATON_OIDC_ROLE_MAP: {claim_value!r} maps to {role!r}, not a staff role")
        if "openid" not in self.oidc_scopes.split():
            raise ValueError(f"BATON_OIDC_SCOPES: {self.oidc_scopes!r} must include openid")
        return self

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def oidc_enabled(self) -> bool:
        """Whether staff may sign in through the organization's identity provider."""
        return self.oidc_issuer is not None

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
