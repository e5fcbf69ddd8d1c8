"""Salesforce source: the krpulse.yaml settings model, API constants and default field maps."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.reconcile import ReconcileSettings

DEFAULT_API_VERSION = "62.0"
# Salesforce returns REST query results in pages of up to 2,000 records (`nextRecordsUrl`).
REST_PAGE_SIZE = 2000
# Bulk API 2.0 rejects compound fields (addresses, geolocations); their parts must be named.
COMPOUND_FIELD_TYPES = frozenset({"address", "location"})
# Field and object API names reach SOQL as identifiers, which cannot be quoted: they are
# validated against this pattern instead (a relationship path like `Owner.UserRole.Name` is fine).
SOQL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
# Salesforce's shared login hosts: the client credentials flow is not served there.
GENERIC_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})

# Opportunity.Type values of a standard org -> canonical deal_type. Orgs with their own picklist
# values extend or replace this with `deals.deal_type_map`; a value in neither is quarantined.
DEFAULT_DEAL_TYPE_MAP: dict[str, str] = {
    "New Customer": "new_business",
    "New Business": "new_business",
    "Existing Customer - Upgrade": "existing_business",
    "Existing Customer - Replacement": "existing_business",
    "Existing Customer - Downgrade": "existing_business",
    "Existing Business": "existing_business",
    "Renewal": "renewal",
}

# SurveyQuestion.QuestionType of Net Promoter Score questions (Salesforce Feedback Management).
NPS_QUESTION_TYPES = ("NPS",)

FilterValue = str | int | float | bool | list[str | int | float | bool]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_names(names: list[str | None], what: str) -> None:
    import re

    for name in names:
        if name is not None and not re.match(SOQL_NAME_PATTERN, name):
            raise ValueError(
                f"{what} '{name}' is not a Salesforce API name (letters, digits, underscores, "
                "dots between relationship names)"
            )


class _ObjectSettings(_Model):
    # Extra conditions, field API name -> value (or list of values: IN). Values reach SOQL only
    # through simple_salesforce.format_soql, which quotes and escapes them.
    where: dict[str, FilterValue] = Field(default_factory=dict)

    @field_validator("where")
    @classmethod
    def _filter_fields(cls, where: dict[str, FilterValue]) -> dict[str, FilterValue]:
        _check_names(list(where), "filter field")
        return where


class DealsSettings(_ObjectSettings):
    """Opportunity -> deals. Closed and won always come from IsClosed/IsWon, never stage names."""

    deal_type_field: str = "Type"
    deal_type_map: dict[str, Literal["new_business", "existing_business", "renewal"]] = Field(
        default_factory=lambda: dict(DEFAULT_DEAL_TYPE_MAP)
    )
    pipeline_field: str | None = None  # e.g. RecordType.DeveloperName
    team_field: str | None = None  # default: the owner's team

    @model_validator(mode="after")
    def _names(self) -> DealsSettings:
        _check_names([self.deal_type_field, self.pipeline_field, self.team_field], "field")
        return self


class CustomersSettings(_ObjectSettings):
    """Account -> customers, with segment, region and industry read from configurable fields."""

    segment_field: str | None = None
    region_field: str | None = None
    industry_field: str | None = "Industry"
    team_field: str | None = None  # default: the account owner's team
    # Translate raw field values, e.g. {region: {Germany: DACH, Austria: DACH}}; others kept.
    value_maps: dict[Literal["segment", "region", "industry", "team"], dict[str, str]] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _names(self) -> CustomersSettings:
        _check_names(
            [self.segment_field, self.region_field, self.industry_field, self.team_field], "field"
        )
        return self


class OwnersSettings(_ObjectSettings):
    """User -> owners; the team comes from a user field, the user's role, or a mapping file."""

    team_from: Literal["field", "role", "mapping_file"] = "role"
    team_field: str = "Department"
    # Raw team values (field value or role name) -> krpulse team; values not listed are kept.
    team_map: dict[str, str] = Field(default_factory=dict)
    # CSV with `team` and `owner_id` or `email`; relative to krpulse.yaml.
    mapping_file: Path | None = None

    @model_validator(mode="after")
    def _needs_file(self) -> OwnersSettings:
        _check_names([self.team_field], "field")
        if self.team_from == "mapping_file" and self.mapping_file is None:
            raise ValueError("owners.team_from: mapping_file needs owners.mapping_file")
        return self


class NpsSettings(_ObjectSettings):
    """Where NPS responses live: Feedback Management, a custom object, or nowhere (none).

    auto (the default) reads Feedback Management when the org has it and the integration user
    may read it; otherwise the sync warns that no NPS is synced and goes on with the rest.
    """

    mode: Literal["auto", "feedback_management", "custom_object", "none"] = "auto"
    question_types: list[str] = Field(default_factory=lambda: list(NPS_QUESTION_TYPES))
    # custom_object: the object and canonical column -> field API name.
    object: str | None = None
    fields: dict[Literal["score", "customer_id", "submitted_at", "survey_id", "comment"], str] = (
        Field(default_factory=dict)
    )

    @model_validator(mode="after")
    def _custom_object(self) -> NpsSettings:
        if self.mode == "custom_object":
            if not self.object:
                raise ValueError("nps.mode custom_object needs nps.object (e.g. NPS_Response__c)")
            missing = [c for c in ("score", "customer_id", "submitted_at") if c not in self.fields]
            if missing:
                raise ValueError(
                    f"nps.fields must map {', '.join(missing)} to fields of {self.object}"
                )
            _check_names([self.object], "object")
            _check_names(list(self.fields.values()), "field")
        return self


class CurrencySettings(_Model):
    # Detected from the org (CurrencyType.IsCorporate or Organization.DefaultCurrencyIsoCode)
    # unless given here.
    corporate_currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN)
    # auto: DatedConversionRate when the org has dated rates, else CurrencyType.
    rates: Literal["auto", "dated", "standard"] = "auto"
    # Which day's rate converts an open opportunity. Salesforce's advanced currency management
    # converts it at its CloseDate's rate (as closed ones); created_date keeps the rate of the
    # day it was opened.
    open_deals_rate: Literal["close_date", "created_date"] = "close_date"


class SyncSettings(_Model):
    # Records modified within this many seconds before the cursor are fetched again: SOQL
    # compares whole seconds and a transaction may commit after our query ran.
    lookback_seconds: int = Field(default=300, ge=0)
    # From this many changed records on, an object is extracted through Bulk API 2.0.
    bulk_threshold: int = Field(default=10_000, ge=1)
    bulk_page_size: int = Field(default=50_000, ge=1)
    bulk_poll_seconds: float = Field(default=5.0, gt=0)
    # The sync refuses to start when the org has used this share of its daily API requests.
    max_api_usage_share: float = Field(default=0.8, gt=0, le=1)
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_backoff_seconds: float = Field(default=1.0, ge=0)


class SalesforceAuthSettings(_Model):
    """How krpulse logs in; every secret is named by the environment variable that holds it."""

    method: Literal["jwt", "client_credentials", "session", "password"]
    username: str | None = None
    consumer_key_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    consumer_secret_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    private_key_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    private_key_file: Path | None = None
    session_id_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    password_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    security_token_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)

    @model_validator(mode="after")
    def _required_for_method(self) -> SalesforceAuthSettings:
        needed = {
            "jwt": ["username", "consumer_key_env"],
            "client_credentials": ["consumer_key_env", "consumer_secret_env"],
            "session": ["session_id_env"],
            "password": ["username", "password_env"],
        }[self.method]
        missing = [name for name in needed if getattr(self, name) is None]
        if self.method == "jwt" and not (self.private_key_env or self.private_key_file):
            missing.append("private_key_env (or private_key_file)")
        if missing:
            raise ValueError(f"auth method '{self.method}' needs {', '.join(missing)}")
        return self

    def secret_env_names(self) -> dict[str, str]:
        """Secret name (as SalesforceCredentials calls it) -> environment variable, as configured."""
        fields = {
            "consumer_key": self.consumer_key_env,
            "consumer_secret": self.consumer_secret_env,
            "private_key": self.private_key_env,
            "session_id": self.session_id_env,
            "password": self.password_env,
            "security_token": self.security_token_env,
        }
        return {secret: env for secret, env in fields.items() if env}


class SalesforceSourceSettings(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    type: Literal["salesforce"]
    auth: SalesforceAuthSettings
    # My Domain URL. With `session` auth it is where the session lives; with the OAuth flows the
    # token response names the instance and this only serves as the default login URL.
    instance_url: str | None = Field(default=None, pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?/?$")
    # Where tokens are requested; default: instance_url, else https://<domain>.salesforce.com.
    # An Experience Cloud site's URL carries its path (https://acme.my.site.com/customers).
    login_url: str | None = Field(
        default=None, pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~-]+)*/?$"
    )
    domain: str = Field(default="login", pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")
    api_version: str = Field(default=DEFAULT_API_VERSION, pattern=r"^\d{2,3}\.0$")
    deals: DealsSettings = DealsSettings()
    customers: CustomersSettings = CustomersSettings()
    owners: OwnersSettings = OwnersSettings()
    nps: NpsSettings = NpsSettings()
    currency: CurrencySettings = CurrencySettings()
    sync: SyncSettings = SyncSettings()
    reconcile: ReconcileSettings = ReconcileSettings()

    @model_validator(mode="after")
    def _session_needs_instance(self) -> SalesforceSourceSettings:
        if self.auth.method == "session" and not self.instance_url:
            raise ValueError("auth method 'session' needs instance_url (where the session lives)")
        if self.auth.method == "client_credentials":
            host = urlparse(self.login_url or self.instance_url or "").hostname or ""
            if not host or host in GENERIC_LOGIN_HOSTS:
                raise ValueError(
                    "auth method 'client_credentials' needs the org's My Domain URL: Salesforce "
                    "serves that flow only there, never at login.salesforce.com or "
                    "test.salesforce.com; set instance_url: https://<your-domain>.my.salesforce.com"
                )
        return self

    @property
    def token_base_url(self) -> str:
        """Base URL of the OAuth token endpoint (and the SOAP login of the legacy method)."""
        url = self.login_url or self.instance_url or f"https://{self.domain}.salesforce.com"
        return url.rstrip("/")

    @property
    def audience(self) -> str:
        """The JWT `aud`: https://login.salesforce.com for production (its My Domain too),
        https://test.salesforce.com for sandboxes, else the login_url itself (an Experience
        Cloud site's URL is its own audience)."""
        if not self.login_url:
            return f"https://{'test' if self.domain == 'test' else 'login'}.salesforce.com"
        host = urlparse(self.login_url).hostname or ""
        if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com"):
            return "https://test.salesforce.com"
        if host == "login.salesforce.com" or host.endswith(".my.salesforce.com"):
            return "https://login.salesforce.com"
        return self.login_url.rstrip("/")
