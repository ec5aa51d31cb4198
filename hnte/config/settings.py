"""Process settings from the environment (prefix ``HNTE_``), reached through ``get_settings()``."""

from __future__ import annotations

import getpass
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///hnte.db"
BUNDLED_CITY_FILE = Path(__file__).with_name("qingdao-2021.toml")


class Settings(BaseSettings):
    """Everything a process needs to know about where it runs; secrets stay SecretStr."""

    model_config = SettingsConfigDict(env_prefix="HNTE_", extra="ignore")

    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    city_file: Path = BUNDLED_CITY_FILE
    timezone: str = "Asia/Shanghai"
    operator: str | None = None
    language: str = "zh"

    review_chunk: int = Field(default=20_000, ge=1, description="applications per unit of work")
    # Fault injection for the crash tests: "STEP:N" kills this process with SIGKILL just
    # before the N-th commit of STEP (e.g. "formal_check:2"). Never set in production.
    fault_at: str | None = None

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "hnte@kjj.qingdao.gov.cn"
    smtp_timeout: float = 30.0

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone name
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def operator_name(self) -> str:
        """The person recorded on manual decisions: HNTE_OPERATOR, else the OS user."""
        if self.operator:
            return self.operator
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"


_override: Settings | None = None


@lru_cache
def _from_environment() -> Settings:
    return Settings()


def get_settings() -> Settings:
    return _override or _from_environment()


get_settings.cache_clear = _from_environment.cache_clear  # type: ignore[attr-defined]


def use_settings(settings: Settings | None) -> None:
    """Make this process use ``settings`` (the demo's own database and mail server);
    ``None`` goes back to the environment."""
    global _override
    _override = settings
    from hnte.models.db import get_engine

    get_engine.cache_clear()


def redact_url(url: str) -> str:
    """A database URL safe to print: the password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is printed as nothing useful
        return "<invalid database url>"
