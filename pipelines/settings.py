"""krpulse.yaml: the non-secret settings, validated, with relative paths resolved to its folder."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from sqlalchemy.engine import make_url

from connectors.hubspot.settings import HubSpotSourceSettings
from connectors.salesforce.settings import SalesforceSourceSettings
from core.calendar import known_timezone
from dashboard.config import DashboardSettings
from kr_metrics.scoring import ScoringPolicy
from pipelines.orchestration_settings import NotificationSettings, OrchestrationSettings
from validation.settings import ValidationSettings

CONFIG_ENV = "KRPULSE_CONFIG"
DATABASE_URL_ENV = "KRPULSE_DATABASE_URL"
DEFAULT_CONFIG = "krpulse.yaml"


class ConfigError(ValueError):
    """krpulse.yaml is missing or wrong; the message names the file and what to fix."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilesSourceSettings(_Settings):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    type: Literal["files"]
    path: Path


SourceSettings = Annotated[
    FilesSourceSettings | SalesforceSourceSettings | HubSpotSourceSettings,
    Field(discriminator="type"),
]


class ScheduleSettings(_Settings):
    """The daily run, at this local time in the organisation's timezone."""

    hour: int = Field(default=6, ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)


class ScoringSettings(_Settings):
    moonshot_success: float = Field(default=0.7, ge=0.6, le=0.7)
    at_risk_gap: float = Field(default=0.10, ge=0)
    off_track_gap: float = Field(default=0.25, ge=0)
    min_sample: int = Field(
        default=10, ge=0, description="Below this many records a rate is `low_sample`."
    )
    grace_days: int = Field(
        default=7, ge=0, description="Days after a cycle's end before grades are final."
    )
    partial_grade: float = Field(
        default=0.4, ge=0, le=1, description="Grade from which a KR is partially achieved."
    )

    def policy(self) -> ScoringPolicy:
        return ScoringPolicy(
            self.moonshot_success,
            self.at_risk_gap,
            self.off_track_gap,
            self.min_sample,
            self.grace_days,
            self.partial_grade,
        )


# "cycle/kr", e.g. "2026-Q4/nps-company": KR keys are unique within a cycle, not across cycles.
KrRef = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class PerdooSinkSettings(_Settings):
    """Push KR values to Perdoo key results (GraphQL upsertKeyResult, currentValue)."""

    url: str = "https://api-eu.perdoo.com/graphql/"
    token_env: EnvName = "PERDOO_API_TOKEN"  # noqa: S105 - the variable's name, not a secret
    key_results: dict[KrRef, str] = Field(description="KR -> Perdoo key result id (UUID)")


class WeekdoneTarget(_Settings):
    objective: int | str
    result: int | str


class WeekdoneSinkSettings(_Settings):
    """Push KR progress (grade as 0–100 %) to Weekdone key results."""

    url: str = "https://api.weekdone.com"
    token_env: EnvName = "WEEKDONE_TOKEN"  # noqa: S105 - the variable's name, not a secret
    key_results: dict[KrRef, WeekdoneTarget]


class WebhookSinkSettings(_Settings):
    """POST each changed KR as JSON, HMAC-SHA256-signed with the secret from `secret_env`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    url: str
    secret_env: EnvName
    key_results: dict[KrRef, str] = Field(description="KR -> the receiver's id for it")


class PushRetrySettings(_Settings):
    attempts: int = Field(default=4, ge=1, le=10)
    initial_wait: float = Field(default=1.0, ge=0)
    max_wait: float = Field(default=30.0, ge=0)
    timeout: float = Field(default=20.0, gt=0)


class SinksSettings(_Settings):
    """`sinks:` in krpulse.yaml: which OKR tools receive which KRs (by the tool's own id)."""

    perdoo: PerdooSinkSettings | None = None
    weekdone: WeekdoneSinkSettings | None = None
    webhooks: list[WebhookSinkSettings] = Field(default_factory=list)
    retry: PushRetrySettings = Field(default_factory=PushRetrySettings)

    @property
    def configured(self) -> bool:
        return bool(self.perdoo or self.weekdone or self.webhooks)


class EngineSettings(_Settings):
    """`engine:` in krpulse.yaml: where the compiled engine computes the day run's numbers.

    `auto` (the default) computes in the store's database when it is PostgreSQL — the compiled
    statements read its staging tables, nothing is loaded into the run's process — and in
    embedded DuckDB over the staged rows read into the process when it is SQLite. `duckdb`
    keeps the computation off a PostgreSQL the run should only read from; `database` insists on
    PostgreSQL (an error on SQLite, which cannot run the compiled statements).
    """

    compute: Literal["auto", "duckdb", "database"] = "auto"


class Settings(_Settings):
    timezone: str = "UTC"
    reporting_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    database_url: str = "sqlite:///.krpulse/krpulse.db"
    definitions: Path = Path("definitions")
    partitions_start: dt.date | None = Field(
        default=None, description="First daily partition; defaults to the earliest cycle start."
    )
    sources: list[SourceSettings] = Field(default_factory=list)
    schedule: ScheduleSettings = ScheduleSettings()
    scoring: ScoringSettings = ScoringSettings()
    engine: EngineSettings = Field(default_factory=EngineSettings)
    sinks: SinksSettings = Field(default_factory=SinksSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    root: Path = Field(default=Path("."), exclude=True)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return known_timezone(value)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceSettings]) -> list[SourceSettings]:
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicates)}")
        return sources

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def definitions_path(self) -> Path:
        return self.resolve(self.definitions)

    @property
    def effective_database_url(self) -> str:
        """KRPULSE_DATABASE_URL wins; a relative SQLite path is relative to krpulse.yaml."""
        url = os.environ.get(DATABASE_URL_ENV) or self.database_url
        parsed = make_url(url)
        if (
            parsed.get_backend_name() == "sqlite"
            and parsed.database not in (None, "", ":memory:")
            and not parsed.database.startswith("file:")  # a URI (`?uri=true`) is used as given
        ):
            database = Path(parsed.database)
            if not database.is_absolute():
                return parsed.set(database=str(self.resolve(database))).render_as_string(
                    hide_password=False
                )
        return url

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError(f"no source named '{name}' (sources: {known})")

    def today(self) -> dt.date:
        return dt.datetime.now(ZoneInfo(self.timezone)).date()


def config_path(explicit: str | Path | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_settings(path: str | Path | None = None) -> Settings:
    """Read krpulse.yaml (or --config / KRPULSE_CONFIG) into Settings, or raise ConfigError."""
    file = config_path(path)
    if not file.exists():
        raise ConfigError(
            f"{file}: not found; run from the project folder, pass --config PATH or set {CONFIG_ENV}"
        )
    try:
        data = YAML(typ="safe").load(file.read_text(encoding="utf-8")) or {}
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(f"{file}:{line}: invalid YAML: {exc.problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of settings")
    try:
        return Settings.model_validate({**data, "root": file.resolve().parent})
    except ValidationError as exc:
        lines = [
            f"{file}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise ConfigError("\n".join(lines)) from exc
