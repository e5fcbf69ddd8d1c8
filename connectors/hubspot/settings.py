"""HubSpot source constants (properties, scopes, limits) and its krpulse.yaml settings model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.reconcile import ReconcileSettings

DEFAULT_BASE_URL = "https://api.hubapi.com"

# CRM object types as the v3/v4 APIs name them.
DEALS_TYPE = "deals"
COMPANIES_TYPE = "companies"
CONTACTS_TYPE = "contacts"
FEEDBACK_TYPE = "feedback_submissions"

# The list endpoints return at most 100 records a page, search at most 200, and a search query
# at most 10,000 results in all (asking for more is a 400).
LIST_PAGE_SIZE = 100
SEARCH_PAGE_SIZE = 200
SEARCH_RESULT_LIMIT = 10_000
# v4 association batch reads take up to 1,000 ids per request.
ASSOCIATION_BATCH_SIZE = 1_000

LAST_MODIFIED = "hs_lastmodifieddate"
# On the record that survived a merge: the ids merged into it, ";"-separated.
MERGED_IDS = "hs_merged_object_ids"
OBJECT_ID = "hs_object_id"

# Association type ids HubSpot defines for the "Primary" label.
PRIMARY_DEAL_TO_COMPANY = 5
PRIMARY_CONTACT_TO_COMPANY = 1

DEAL_PROPERTIES = (
    "dealname",
    "amount",
    "deal_currency_code",
    "amount_in_home_currency",
    "dealstage",
    "pipeline",
    "closedate",
    "createdate",
    "hubspot_owner_id",
    "dealtype",
    LAST_MODIFIED,
)
COMPANY_PROPERTIES = ("name", "industry", "hubspot_owner_id", "createdate", LAST_MODIFIED)
FEEDBACK_PROPERTIES = (
    "hs_survey_type",
    "hs_value",
    "hs_submission_timestamp",
    "hs_survey_id",
    LAST_MODIFIED,
)
NPS_SURVEY_TYPE = "NPS"

# What a private app needs, per object type, for everything krpulse reads of it; named in the
# error when HubSpot answers 403.
REQUIRED_SCOPES: dict[str, tuple[str, ...]] = {
    DEALS_TYPE: ("crm.objects.deals.read", "crm.schemas.deals.read"),
    COMPANIES_TYPE: ("crm.objects.companies.read", "crm.schemas.companies.read"),
    CONTACTS_TYPE: ("crm.objects.contacts.read",),
    FEEDBACK_TYPE: ("crm.objects.feedback_submissions.read", "crm.objects.contacts.read"),
    "owners": ("crm.objects.owners.read",),
}
# The account details (company currency, time zone) need no scope beyond the token itself.
ACCOUNT_DETAILS_PATH = "/account-info/v3/details"
ALL_SCOPES = tuple(sorted({scope for scopes in REQUIRED_SCOPES.values() for scope in scopes}))

# HubSpot's internal deal type values -> canonical deal_type; "renewal" is a common custom value.
DEFAULT_DEAL_TYPES = {
    "newbusiness": "new_business",
    "existingbusiness": "existing_business",
    "renewal": "renewal",
}


class CompanyPropertyMap(BaseModel):
    """Which company properties feed the canonical customer columns (portals differ here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str | None = "country"
    segment: str | None = None
    industry: str | None = "industry"


class HubSpotSourceSettings(BaseModel):
    """`- {name: hubspot, type: hubspot, access_token_env: HUBSPOT_TOKEN}` in krpulse.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    type: Literal["hubspot"]
    # The NAME of the environment variable holding the private-app access token, never the token.
    access_token_env: str = Field(default="HUBSPOT_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    base_url: str = DEFAULT_BASE_URL
    # The portal's company currency: what an empty deal_currency_code means and what
    # amount_in_home_currency is in. Unset: read from the portal's account details
    # (companyCurrency of /account-info/v3/details).
    portal_currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    # NPS from feedback submissions: auto syncs them when the private app has the
    # feedback-submissions scope and warns (syncing the rest) when it has not; none skips them.
    nps: Literal["auto", "feedback_submissions", "none"] = "auto"
    # Sources whose staged fx_rates convert deals HubSpot gives no home amount for (HubSpot has
    # no dated rates of its own), first listed first; None: every source that stages rates.
    fx_rates_from: list[str] | None = None
    company_properties: CompanyPropertyMap = CompanyPropertyMap()
    deal_types: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_DEAL_TYPES))
    # HubSpot team name -> krpulse team key; unmapped names become slugs ("Sales DACH" -> sales-dach).
    teams: dict[str, str] = Field(default_factory=dict)
    # Search is eventually consistent: re-read this far behind the cursor so late-indexed
    # changes are not skipped.
    lookback_minutes: float = Field(default=10.0, ge=0)
    reconcile: ReconcileSettings = ReconcileSettings()
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)
    backoff_seconds: float = Field(default=1.0, ge=0)
