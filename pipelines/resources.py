"""The Dagster resource that gives assets the settings, the database and the OKR store."""

import dagster as dg
import sqlalchemy as sa

from connectors.hubspot import HubSpotSource
from connectors.hubspot.settings import DEFAULT_BASE_URL, HubSpotSourceSettings
from connectors.salesforce import SalesforceCredentials, SalesforceSource, SalesforceSourceSettings
from okr_store.repository import OkrStore
from pipelines import flow
from pipelines.settings import Settings, load_settings


class KrpulseResource(dg.ConfigurableResource):
    """krpulse.yaml plus the database URL; secrets arrive only through dg.EnvVar."""

    config_path: str = "krpulse.yaml"
    # Set with dg.EnvVar("KRPULSE_DATABASE_URL") in production; empty means krpulse.yaml's.
    database_url: str = ""

    def settings(self) -> Settings:
        settings = load_settings(self.config_path)
        if self.database_url:
            settings = settings.model_copy(update={"database_url": self.database_url})
        return settings

    def engine(self) -> sa.Engine:
        return flow.open_database(self.settings())

    def store(self) -> OkrStore:
        return OkrStore(self.engine())


class HubSpotResource(dg.ConfigurableResource):
    """One HubSpot portal: its private app's access token (always a dg.EnvVar) and base URL."""

    access_token: str
    base_url: str = DEFAULT_BASE_URL

    def source(self, settings: Settings, source: HubSpotSourceSettings) -> HubSpotSource:
        return HubSpotSource(
            source.name,
            source.model_copy(update={"base_url": self.base_url}),
            access_token=self.access_token,
            timezone=settings.timezone,
        )


def source_resource_key(source_name: str) -> str:
    return f"{source_name.replace('-', '_')}_source"


def source_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Per-source resources (keyed by source_resource_key) for sources that hold secrets."""
    return {
        source_resource_key(s.name): HubSpotResource(
            access_token=dg.EnvVar(s.access_token_env), base_url=s.base_url
        )
        for s in settings.sources
        if s.type == "hubspot"
    } | salesforce_resources(settings)


class SalesforceResource(dg.ConfigurableResource):
    """The secrets of one Salesforce source, each fed by dg.EnvVar(<the name krpulse.yaml gives>).

    Dagster resolves the variables when the run starts and never shows their values; secrets
    the source's auth method does not use stay empty.
    """

    consumer_key: str = ""
    consumer_secret: str = ""
    private_key: str = ""
    session_id: str = ""
    password: str = ""
    security_token: str = ""

    def source(self, settings: Settings, source: SalesforceSourceSettings) -> SalesforceSource:
        secrets = {
            name: getattr(self, name) or None for name in SalesforceCredentials.__dataclass_fields__
        }
        return SalesforceSource(
            source.name,
            source,
            base_path=settings.root,
            credentials=SalesforceCredentials(**secrets),
        )


def salesforce_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """A SalesforceResource per salesforce source, its secrets from the env vars it names."""
    return {
        source_resource_key(s.name): SalesforceResource(
            **{secret: dg.EnvVar(env) for secret, env in s.auth.secret_env_names().items()}
        )
        for s in settings.sources
        if s.type == "salesforce"
    }
