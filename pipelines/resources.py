"""The Dagster resource that gives assets the settings, the database and the OKR store."""

import dagster as dg
import sqlalchemy as sa

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
