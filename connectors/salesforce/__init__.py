"""The Salesforce source: deals, customers, owners, NPS and FX rates, incrementally, into staging."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from connectors.base import ObjectPlan, SourceCheck, SourceError, SourceLimitReached
from connectors.money import OpenDealRate, convert_deals
from connectors.reconcile import next_state, reconciliation_due
from connectors.salesforce.helpers import (
    LegacyLoginWarning,
    SalesforceClient,
    SalesforceCredentials,
    credentials_from_env,
    filter_conditions,
    modified_since,
    salesforce_errors,
    soql,
)
from connectors.salesforce.settings import SalesforceSourceSettings
from core.canonical import (
    CANONICAL_TABLES,
    CUSTOMERS,
    DEALS,
    FX_RATES,
    NPS_RESPONSES,
    OWNERS,
    SchemaError,
    conform,
)
from core.sync import StagingBatch, StagingWriter, SyncReport

__all__ = [
    "LegacyLoginWarning",
    "SalesforceCredentials",
    "SalesforceSource",
    "SalesforceSourceSettings",
    "credentials_from_env",
]

log = logging.getLogger(__name__)

# What Salesforce Feedback Management must expose for krpulse to read NPS answers.
FEEDBACK_MANAGEMENT_OBJECTS = ("SurveyQuestionResponse", "SurveyResponse", "SurveySubject")
# FX rates first (deals need them), owners before the records whose team they give.
SYNC_ORDER = (FX_RATES, OWNERS, CUSTOMERS, DEALS, NPS_RESPONSES)
# CurrencyType has no validity dates: its rates hold from the beginning of time until replaced.
STANDARD_RATES_FROM = pd.Timestamp("1970-01-01")


@dataclass
class _Extraction:
    """Raw records of one object since the cursor, deduplicated by Id, and the next cursor."""

    frame: pd.DataFrame
    previous_cursor: dt.datetime | None
    cursor: dt.datetime | None
    since: dt.datetime | None
    path: str
    fetched: int
    # Ids changed since the cursor that no longer match the configured filters.
    left_filter: set[str] = field(default_factory=set)
    # Every id the CRM still selects, when this sync reconciled (None: it did not).
    present: set[str] | None = None
    reconciled: str | None = None
    state: dict = field(default_factory=dict)


@dataclass
class _OrgFacts:
    objects: set[str]
    multi_currency: bool
    corporate_currency: str
    field_types: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class SalesforceSource:
    """One Salesforce org as a krpulse source (see README, "The Salesforce source").

    Each object is extracted from its `SystemModstamp` cursor (minus a lookback window) and
    handed to the writer in its own batch (one transaction), which also writes the new cursor: an object
    whose merge rolls back, or whose extraction stops on REQUEST_LIMIT_EXCEEDED, keeps its old
    cursor and is fetched again next time. Secrets come from `credentials`, or when that is
    None from the environment variables krpulse.yaml names.
    """

    name: str
    settings: SalesforceSourceSettings
    base_path: Path = Path(".")
    credentials: SalesforceCredentials | None = None
    objects: tuple[str, ...] = SYNC_ORDER
    # When "now" is, for the reconciliation cadence (tests move it).
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC), repr=False)
    _fx_changed: bool = field(default=False, init=False, repr=False)

    # -- the Source protocol ----------------------------------------------------------------

    def sync(self, writer: StagingWriter, *, home_currency: str) -> list[SyncReport]:
        """Extract what changed since each object's cursor and hand it to `writer`; one report
        per object."""
        settings = self.settings
        with salesforce_errors(settings):
            credentials = self.credentials or credentials_from_env(settings)
            client = SalesforceClient(settings, credentials)
            self._check_api_budget(client)
            org = self._org_facts(client)
            self._fx_changed = False
            reports = [
                self._sync_fx_rates(writer, client, org, home_currency),
                self._sync_owners(writer, client, org),
                self._sync_customers(writer, client, org),
                self._sync_deals(writer, client, org, home_currency),
                self._sync_nps(writer, client, org),
            ]
        return reports

    # -- krpulse doctor ---------------------------------------------------------------------

    def check(self, *, home_currency: str) -> SourceCheck:
        """Read the org's metadata, and say what a sync will read and what is missing."""
        settings = self.settings
        report = SourceCheck(self.name, "salesforce")
        login = f"{settings.auth.method} at {settings.token_base_url}"
        if settings.auth.method == "jwt":
            login += f" (JWT audience {settings.audience})"
        report.facts["login"] = login
        try:
            with salesforce_errors(settings):
                client = SalesforceClient(
                    settings, self.credentials or credentials_from_env(settings)
                )
                used, limit = client.daily_api_usage()
                report.facts["API requests used today"] = f"{used:,} of {limit:,}"
                org = self._org_facts(client)
                self._check_org(report, client, org, home_currency)
        except SourceError as exc:
            report.problems.append(str(exc))
        return report

    def _check_org(
        self, report: SourceCheck, client: SalesforceClient, org: _OrgFacts, home_currency: str
    ) -> None:
        settings = self.settings
        dated = (
            org.multi_currency
            and settings.currency.rates != "standard"
            and "DatedConversionRate" in org.objects
        )
        rates_from = (
            "DatedConversionRate (advanced currency management)"
            if dated
            else "CurrencyType"
            if org.multi_currency
            else "none (single currency)"
        )
        report.facts["currency mode"] = (
            f"{'multi' if org.multi_currency else 'single'} currency, corporate "
            f"{org.corporate_currency}, reporting {home_currency}; rates from {rates_from}; "
            f"open deals at their {settings.currency.open_deals_rate.replace('_', ' ')}'s rate"
        )
        if settings.currency.rates == "dated" and not dated:
            report.problems.append(
                f"source '{self.name}': currency.rates is 'dated' but the org has no "
                "DatedConversionRate (advanced currency management off?)"
            )
        report.plans.append(
            ObjectPlan(
                FX_RATES, rates_from, ["IsoCode", "ConversionRate", "StartDate", "NextStartDate"]
            )
        )
        for table in (OWNERS, CUSTOMERS, DEALS):
            object_name, field_names, configured = self._plan(table, org)
            if object_name not in org.objects:
                report.problems.append(
                    f"source '{self.name}': object {object_name} is not available to the "
                    "integration user; check the permission set"
                )
                continue
            types = self._fields_of(client, org, object_name)
            report.problems += self._missing_fields(types, object_name, configured)
            where = getattr(settings, table).where
            how = "read whole every sync" if table == OWNERS else "incremental (SystemModstamp)"
            report.plans.append(
                ObjectPlan(
                    table,
                    f"{object_name}, {how}",
                    field_names,
                    " AND ".join(filter_conditions(where)) if where else "",
                )
            )
        mode, warning = self._nps_mode(org)
        report.facts["NPS mode"] = mode + (
            f" (nps.mode: {settings.nps.mode})" if mode != settings.nps.mode else ""
        )
        if warning:
            report.warnings.append(warning)
        if mode == "feedback_management":
            report.plans.append(
                ObjectPlan(
                    NPS_RESPONSES,
                    "SurveyQuestionResponse (Feedback Management), incremental",
                    [
                        "Id",
                        "NumberValue",
                        "Response.CompletionDateTime",
                        "Response.SurveyId",
                        "SurveySubject.SubjectId",
                    ],
                    f"Question.QuestionType IN {list(settings.nps.question_types)}, "
                    "Response.Status = 'Completed'",
                )
            )
        elif mode == "custom_object":
            object_name = str(settings.nps.object)
            if object_name not in org.objects:
                report.problems.append(
                    f"source '{self.name}': nps.object {object_name} is not available to the "
                    "integration user; check the permission set"
                )
            else:
                types = self._fields_of(client, org, object_name)
                report.problems += self._missing_fields(
                    types,
                    object_name,
                    {f"nps.fields.{k}": v for k, v in settings.nps.fields.items()},
                )
                report.plans.append(
                    ObjectPlan(
                        NPS_RESPONSES,
                        f"{object_name}, incremental",
                        list(settings.nps.fields.values()),
                    )
                )
        cadence = settings.reconcile
        report.facts["reconciliation"] = (
            f"id sweep every {cadence.every_days:g} days and after {cadence.after_gap_days:g}-day "
            "gaps between syncs; owners re-read whole every sync (team moves re-stamp deals and "
            "customers)"
        )

    # -- org-level checks -------------------------------------------------------------------

    def _check_api_budget(self, client: SalesforceClient) -> None:
        used, limit = client.daily_api_usage()
        share = self.settings.sync.max_api_usage_share
        if limit and used / limit >= share:
            raise SourceLimitReached(
                f"source '{self.name}': the org has used {used:,} of its {limit:,} daily API "
                f"requests ({used / limit:.0%}); krpulse does not start a sync above {share:.0%} "
                "(sync.max_api_usage_share) so other integrations keep their budget; nothing "
                "was synced and the cursors are unchanged"
            )

    def _org_facts(self, client: SalesforceClient) -> _OrgFacts:
        objects = client.object_names()
        opportunity = client.field_types("Opportunity")
        # Multi-currency orgs have CurrencyIsoCode on every currency-bearing object.
        multi = "CurrencyIsoCode" in opportunity
        corporate = self.settings.currency.corporate_currency
        if corporate is None:
            object_name, field_name, conditions = (
                ("CurrencyType", "IsoCode", ["IsCorporate = true"])
                if multi
                else ("Organization", "DefaultCurrencyIsoCode", [])
            )
            found = client.records(
                soql(object_name, [field_name], conditions), include_deleted=False
            )
            if found.empty or pd.isna(found[field_name].iloc[0]):
                raise SourceError(
                    f"source '{self.name}': cannot tell the org's corporate currency; set "
                    "currency.corporate_currency in krpulse.yaml"
                )
            corporate = str(found[field_name].iloc[0])
        return _OrgFacts(objects, multi, corporate, {"Opportunity": opportunity})

    def _fields_of(self, client: SalesforceClient, org: _OrgFacts, object_name: str) -> dict:
        if object_name not in org.field_types:
            if object_name not in org.objects:
                raise SourceError(
                    f"source '{self.name}': object {object_name} is not available to the "
                    "integration user (missing from describe); check the permission set"
                )
            org.field_types[object_name] = client.field_types(object_name)
        return org.field_types[object_name]

    def _require_fields(
        self, types: dict[str, str], object_name: str, configured: dict[str, str | None]
    ) -> None:
        """Configured top-level fields must exist; say which setting names a missing one."""
        missing = self._missing_fields(types, object_name, configured)
        if missing:
            raise SourceError(missing[0])

    def _missing_fields(
        self, types: dict[str, str], object_name: str, configured: dict[str, str | None]
    ) -> list[str]:
        return [
            f"source '{self.name}': {setting} names field {name}, which {object_name} does not "
            "have (or the integration user cannot read); fix krpulse.yaml or the field-level "
            "security"
            for setting, name in configured.items()
            if name and "." not in name and name not in types
        ]

    def _plan(self, table: str, org: _OrgFacts) -> tuple[str, list[str], dict[str, str | None]]:
        """(Salesforce object, fields read, setting -> field it names) of owners, customers or
        deals: what a sync reads, and what `check` shows."""
        if table == OWNERS:
            config = self.settings.owners
            extra = {"field": [config.team_field], "role": ["UserRole.Name"]}.get(
                config.team_from, []
            )
            configured = (
                {"owners.team_field": config.team_field} if extra == [config.team_field] else {}
            )
            return "User", ["Id", "Name", "Email", "SystemModstamp", *extra], configured
        if table == CUSTOMERS:
            config = self.settings.customers
            mapped = {
                "segment": config.segment_field,
                "region": config.region_field,
                "industry": config.industry_field,
                "team": config.team_field,
            }
            field_names = _unique(
                [
                    "Id",
                    "Name",
                    "OwnerId",
                    "CreatedDate",
                    "SystemModstamp",
                    "IsDeleted",
                    *(name for name in mapped.values() if name),
                ]
            )
            return "Account", field_names, {f"customers.{k}_field": v for k, v in mapped.items()}
        config = self.settings.deals
        field_names = _unique(
            [
                "Id",
                "AccountId",
                "Name",
                "OwnerId",
                "StageName",
                "IsClosed",
                "IsWon",
                "Amount",
                "CloseDate",
                "CreatedDate",
                "SystemModstamp",
                "IsDeleted",
                config.deal_type_field,
                *(["CurrencyIsoCode"] if org.multi_currency else []),
                *([config.pipeline_field] if config.pipeline_field else []),
                *([config.team_field] if config.team_field else []),
            ]
        )
        configured = {
            "deals.deal_type_field": config.deal_type_field,
            "deals.pipeline_field": config.pipeline_field,
            "deals.team_field": config.team_field,
        }
        return "Opportunity", field_names, configured

    # -- extraction and merging, shared by every object -------------------------------------

    def _extract(
        self,
        writer: StagingWriter,
        client: SalesforceClient,
        table: str,
        object_name: str,
        field_names: list[str],
        conditions: list[str],
        types: dict[str, str],
        *,
        filters: list[str] = (),  # type: ignore[assignment]
        full: bool = False,
    ) -> _Extraction:
        """Records changed since the cursor (all of them when `full` or on the first sync).

        `conditions` and the configured `filters` select what krpulse syncs. Incrementally, ids
        changed since the cursor but outside the filters have left them (a deal whose type
        changed); on the reconciliation cadence an id sweep lists every id still selected.
        """
        previous = writer.cursor(table)
        state = writer.state(table)
        now = self.clock()
        full = full or previous is None
        selected = [*conditions, *filters]
        since = None
        changed_since = list(selected)
        if not full:
            since = previous - dt.timedelta(seconds=self.settings.sync.lookback_seconds)
            changed_since.append(modified_since(since))
        # The first run is a full extraction of live records; later runs use queryAll so that
        # records deleted since the cursor come back with IsDeleted = true.
        include_deleted = not full and "IsDeleted" in types
        frame, path = client.extract(
            object_name,
            field_names,
            changed_since,
            include_deleted=include_deleted,
            field_types=types,
        )
        fetched = len(frame)
        stamps = pd.to_datetime(
            frame["SystemModstamp"], utc=True, format="ISO8601", errors="coerce"
        )
        # The lookback window and Bulk pages can repeat a record: keep its newest version.
        frame = (
            frame.assign(_stamp=stamps)
            .sort_values("_stamp", kind="stable")
            .drop_duplicates("Id", keep="last")
            .drop(columns="_stamp")
            .reset_index(drop=True)
        )
        newest = stamps.max()
        cursor = previous
        if not pd.isna(newest):
            newest = newest.to_pydatetime()
            cursor = max(previous, newest) if previous else newest
        extraction = _Extraction(frame, previous, cursor, since, path, fetched)
        if filters and since is not None:
            # queryAll: a record that left the filters and was then deleted has left them too.
            moved = self._ids(
                client,
                object_name,
                [*conditions, modified_since(since)],
                types,
                include_deleted="IsDeleted" in types,
            )
            extraction.left_filter = moved - set(frame["Id"].astype(str))
        reason = reconciliation_due(state, now, self.settings.reconcile, first_sync=full)
        if reason is not None:
            extraction.present = self._ids(client, object_name, selected, types)
            extraction.reconciled = reason
        extraction.state = next_state(state, now, reconciled=full or reason is not None)
        return extraction

    def _ids(
        self,
        client: SalesforceClient,
        object_name: str,
        conditions: list[str],
        types: dict,
        *,
        include_deleted: bool = False,
    ) -> set[str]:
        """Ids of the records matching `conditions`, live ones only unless `include_deleted`
        (REST or Bulk, by their number)."""
        ids, _ = client.extract(
            object_name, ["Id"], conditions, include_deleted=include_deleted, field_types=types
        )
        return set(ids["Id"].dropna().astype(str))

    def _staged_versions(self, batch: StagingBatch, table: str) -> pd.DataFrame:
        id_col = CANONICAL_TABLES[table].id_column
        staged = batch.staged(table, columns=[id_col, "last_modified_at", "is_deleted"])
        staged["last_modified_at"] = pd.to_datetime(staged["last_modified_at"], utc=True)
        return staged.rename(columns={id_col: "_id"})

    def _merge(
        self,
        batch: StagingBatch,
        table: str,
        raw: pd.DataFrame,
        extraction: _Extraction,
        *,
        client: SalesforceClient,
        calls_before: int,
        details: dict[str, Any],
        enrich=None,  # noqa: ANN001 - (batch, valid, quarantined) -> (valid, quarantined)
    ) -> SyncReport:
        """Conform `raw` canonical rows, drop the unchanged ones, merge, move the cursor."""
        id_col = CANONICAL_TABLES[table].id_column
        staged = self._staged_versions(batch, table)
        stamps = pd.to_datetime(
            raw["last_modified_at"], utc=True, format="ISO8601", errors="coerce"
        )
        deleted = raw["is_deleted"].astype("string").str.lower().eq("true").fillna(False)
        raw = raw.assign(is_deleted=deleted.map({True: "true", False: "false"}))
        known = raw[[id_col]].merge(staged, left_on=id_col, right_on="_id", how="left")
        staged_deleted = known["is_deleted"].astype("boolean")
        # Records the lookback window fetched again without a change are not "changed".
        unchanged = (
            known["last_modified_at"].notna().to_numpy()
            & (known["last_modified_at"].to_numpy() == stamps.to_numpy())
            & (staged_deleted.fillna(False).to_numpy(dtype=bool) == deleted.to_numpy(dtype=bool))
        )
        live_staged = known["_id"].notna().to_numpy() & ~staged_deleted.fillna(True).to_numpy(
            dtype=bool
        )
        deleted_ids = raw.loc[deleted.to_numpy() & live_staged, id_col].astype(str).tolist()
        # Gone without a trace in this extraction: out of the filters, or missing from the sweep.
        live = set(staged.loc[~staged["is_deleted"].fillna(False).to_numpy(dtype=bool), "_id"])
        vanished = set(extraction.left_filter)
        if extraction.present is not None:
            vanished |= live - extraction.present
        vanished = (vanished & live) - set(raw.loc[~deleted.to_numpy(), id_col].astype(str))
        deleted_ids += sorted(vanished - set(deleted_ids))
        candidates = raw[~unchanged & ~deleted.to_numpy()]
        try:
            conformed = conform(candidates, table, source=self.name)
        except SchemaError as exc:  # pragma: no cover - a mapping bug, not a bad record
            raise SourceError(f"source '{self.name}', {table}: {exc}") from exc
        valid, quarantined = conformed.valid, conformed.quarantined
        if enrich is not None:
            valid, quarantined = enrich(batch, valid, quarantined)
        batch.set_state(table, extraction.state)
        details = {
            **details,
            "left_filter": len(extraction.left_filter & live),
            "reconciled": extraction.reconciled or "",
            "vanished": len(vanished),
        }
        return batch.merge_changes(
            table,
            valid,
            quarantined=quarantined,
            cursor=extraction.cursor,
            deleted_ids=deleted_ids,
            fetched=extraction.fetched,
            api_calls=client.api_calls - calls_before,
            details={
                **_api_details(client, extraction),
                "since": extraction.since.isoformat() if extraction.since else "",
                "reauthentications": client.reauthentications,
                **details,
            },
        )

    # -- FX rates ---------------------------------------------------------------------------

    def _sync_fx_rates(
        self, writer: StagingWriter, client: SalesforceClient, org: _OrgFacts, home_currency: str
    ) -> SyncReport:
        calls_before = 0  # login checks, limits and describes count towards the first object
        details: dict[str, Any] = {
            "currency_mode": "multi" if org.multi_currency else "single",
            "corporate_currency": org.corporate_currency,
        }
        rates = pd.DataFrame(columns=["IsoCode", "ConversionRate", "StartDate", "NextStartDate"])
        stamps = pd.Series(dtype="datetime64[ns, UTC]")
        if org.multi_currency:
            mode = self.settings.currency.rates
            if mode in ("auto", "dated") and "DatedConversionRate" in org.objects:
                rates = client.records(
                    soql(
                        "DatedConversionRate",
                        [
                            "IsoCode",
                            "ConversionRate",
                            "StartDate",
                            "NextStartDate",
                            "SystemModstamp",
                        ],
                        [],
                    ),
                    include_deleted=False,
                )
            if rates.empty and mode == "dated":
                raise SourceError(
                    f"source '{self.name}': currency.rates is 'dated' but the org has no "
                    "DatedConversionRate records (advanced currency management off?)"
                )
            details["rates_from"] = "DatedConversionRate"
            if rates.empty:
                rates = client.records(
                    soql(
                        "CurrencyType",
                        ["IsoCode", "ConversionRate", "SystemModstamp"],
                        ["IsActive = true"],
                    ),
                    include_deleted=False,
                ).assign(StartDate=STANDARD_RATES_FROM, NextStartDate=pd.NaT)
                details["rates_from"] = "CurrencyType"
            stamps = pd.to_datetime(rates["SystemModstamp"], utc=True, format="ISO8601")
        fx = rates_to_home(rates, home_currency, org.corporate_currency)
        if org.multi_currency and fx.empty and not rates.empty:
            details["warning"] = (
                f"reporting currency {home_currency} is not a currency of the org: deals in "
                "other currencies are quarantined until fx_rates come from another source"
            )
        extraction = _Extraction(
            rates,
            None,
            stamps.max().to_pydatetime() if len(stamps) else None,
            None,
            "rest" if org.multi_currency else "none",
            len(rates),
        )
        with writer.batch() as batch:
            conformed = conform(fx, FX_RATES, source=self.name)
            staged = batch.staged(FX_RATES)
            key = ["currency", "valid_from"]
            merged = conformed.valid.merge(
                staged.drop(columns="source"), on=key, how="left", suffixes=("", "_staged")
            )
            same = (merged["rate_to_home"] == merged["rate_to_home_staged"]) & (
                (merged["valid_to"] == merged["valid_to_staged"])
                | (merged["valid_to"].isna() & merged["valid_to_staged"].isna())
            )
            changed = conformed.valid[~same.to_numpy()].reset_index(drop=True)
            # Periods restated away (a rate deleted, two periods joined) must not linger.
            gone = staged[~staged.set_index(key).index.isin(conformed.valid.set_index(key).index)][
                key
            ]
            batch.drop_fx_rates(gone)
            details["fx_periods_dropped"] = len(gone)
            self._fx_changed = not (changed.empty and gone.empty)
            return batch.merge_changes(
                FX_RATES,
                changed,
                quarantined=conformed.quarantined,
                cursor=extraction.cursor,
                fetched=extraction.fetched,
                api_calls=client.api_calls - calls_before,
                details={
                    **_api_details(client, extraction),
                    **details,
                },
            )

    # -- owners -----------------------------------------------------------------------------

    def _sync_owners(
        self, writer: StagingWriter, client: SalesforceClient, org: _OrgFacts
    ) -> SyncReport:
        calls_before = client.api_calls
        config = self.settings.owners
        types = self._fields_of(client, org, "User")
        _, field_names, configured = self._plan(OWNERS, org)
        self._require_fields(types, "User", configured)
        extraction = self._extract(
            writer,
            client,
            OWNERS,
            "User",
            field_names,
            filter_conditions(config.where),
            types,
            full=True,  # a few users; read whole, a renamed role moves a team without a User edit
        )
        frame = extraction.frame
        if config.team_from == "field":
            team = frame[config.team_field]
        elif config.team_from == "role":
            team = frame["UserRole.Name"]
        else:
            team = self._teams_from_mapping_file(frame)
        raw = pd.DataFrame(
            {
                "owner_id": frame["Id"],
                "name": frame["Name"],
                "email": frame["Email"],
                "team": pd.Series(team, index=frame.index).replace(config.team_map),
            }
        )
        with writer.batch() as batch:
            staged = batch.staged(OWNERS)
            conformed = conform(raw, OWNERS, source=self.name)
            valid = conformed.valid
            before = valid[["owner_id"]].merge(
                staged[["owner_id", "name", "email", "team"]], on="owner_id", how="left"
            )
            same = (
                before["owner_id"].isin(staged["owner_id"]).to_numpy()
                & _equal(valid["name"], before["name"])
                & _equal(valid["email"], before["email"])
                & _equal(valid["team"], before["team"])
            )
            existed = before["owner_id"].isin(staged["owner_id"]).to_numpy()
            team_moved = existed & ~_equal(valid["team"], before["team"])
            self._propagate_owner_teams(batch, valid[team_moved])
            return batch.merge_changes(
                OWNERS,
                valid[~same].reset_index(drop=True),
                quarantined=conformed.quarantined,
                cursor=extraction.cursor,
                fetched=extraction.fetched,
                api_calls=client.api_calls - calls_before,
                details={
                    **_api_details(client, extraction),
                    "since": extraction.since.isoformat() if extraction.since else "",
                    "team_from": config.team_from,
                    "owners_moved_team": int(team_moved.sum()),
                },
            )

    def _teams_from_mapping_file(self, frame: pd.DataFrame) -> pd.Series:
        path = self.settings.owners.mapping_file
        assert path is not None  # validated by OwnersSettings
        path = path if path.is_absolute() else (self.base_path / path)
        try:
            mapping = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except (OSError, ValueError) as exc:
            raise SourceError(
                f"source '{self.name}': cannot read owners.mapping_file {path}: {exc}"
            ) from exc
        if "team" not in mapping or not ({"owner_id", "email"} & set(mapping.columns)):
            raise SourceError(
                f"source '{self.name}': {path} needs a `team` column and `owner_id` or `email`"
            )
        team = pd.Series(pd.NA, index=frame.index, dtype="string")
        if "email" in mapping:
            by_email = mapping.dropna(subset=["email"]).drop_duplicates("email", keep="last")
            by_email = by_email.set_index(by_email["email"].str.lower())["team"]
            team = frame["Email"].astype("string").str.lower().map(by_email).astype("string")
        if "owner_id" in mapping:
            by_id = mapping.dropna(subset=["owner_id"]).drop_duplicates("owner_id", keep="last")
            team = (
                frame["Id"].map(by_id.set_index("owner_id")["team"]).astype("string").fillna(team)
            )
        return team

    def _propagate_owner_teams(self, batch: StagingBatch, moved: pd.DataFrame) -> None:
        """An owner who changed team takes the deals and customers whose team is theirs along."""
        for table, team_field in (
            (DEALS, self.settings.deals.team_field),
            (CUSTOMERS, self.settings.customers.team_field),
        ):
            if not team_field:  # else the team comes from the record itself, not from its owner
                batch.reassign_teams(table, moved[["owner_id", "team"]])

    def _owner_teams(self, batch: StagingBatch) -> pd.Series:
        owners = batch.staged(OWNERS)
        return owners.drop_duplicates("owner_id").set_index("owner_id")["team"]

    # -- customers --------------------------------------------------------------------------

    def _sync_customers(
        self, writer: StagingWriter, client: SalesforceClient, org: _OrgFacts
    ) -> SyncReport:
        calls_before = client.api_calls
        config = self.settings.customers
        types = self._fields_of(client, org, "Account")
        mapped = {
            "segment": config.segment_field,
            "region": config.region_field,
            "industry": config.industry_field,
            "team": config.team_field,
        }
        _, field_names, configured = self._plan(CUSTOMERS, org)
        self._require_fields(types, "Account", configured)
        extraction = self._extract(
            writer,
            client,
            CUSTOMERS,
            "Account",
            field_names,
            [],
            types,
            filters=filter_conditions(config.where),
        )
        frame = extraction.frame
        with writer.batch() as batch:
            owner_team = None if config.team_field else self._owner_teams(batch)
            raw = pd.DataFrame(
                {
                    "customer_id": frame["Id"],
                    "name": frame["Name"],
                    **{
                        column: frame[name] if name else pd.Series(pd.NA, index=frame.index)
                        for column, name in mapped.items()
                        if column != "team"
                    },
                    "owner_id": frame["OwnerId"],
                    "team": frame[config.team_field]
                    if config.team_field
                    else frame["OwnerId"].map(owner_team),
                    "created_at": frame["CreatedDate"],
                    "last_modified_at": frame["SystemModstamp"],
                    "is_deleted": frame["IsDeleted"],
                }
            )
            for column, value_map in config.value_maps.items():
                raw[column] = raw[column].replace(value_map)
            return self._merge(
                batch,
                CUSTOMERS,
                raw,
                extraction,
                client=client,
                calls_before=calls_before,
                details={},
            )

    # -- deals ------------------------------------------------------------------------------

    def _sync_deals(
        self, writer: StagingWriter, client: SalesforceClient, org: _OrgFacts, home_currency: str
    ) -> SyncReport:
        calls_before = client.api_calls
        config = self.settings.deals
        types = org.field_types["Opportunity"]
        _, field_names, configured = self._plan(DEALS, org)
        self._require_fields(types, "Opportunity", configured)
        extraction = self._extract(
            writer,
            client,
            DEALS,
            "Opportunity",
            field_names,
            [],
            types,
            filters=filter_conditions(config.where),
        )
        frame = extraction.frame
        details: dict[str, Any] = {"currency_mode": "multi" if org.multi_currency else "single"}

        open_at = self.settings.currency.open_deals_rate
        details["open_deals_rate"] = open_at

        def convert(batch: StagingBatch, valid: pd.DataFrame, quarantined: pd.DataFrame):
            fx = batch.staged(FX_RATES)
            valid, rejected = _with_home_amounts(valid, fx, home_currency, open_at)
            if self._fx_changed:
                # New or corrected rates: convert the staged deals again, not only the new ones.
                staged = batch.staged(DEALS)
                staged = staged[
                    ~staged["deal_id"].isin(valid["deal_id"]) & ~staged["is_deleted"].fillna(False)
                ].reset_index(drop=True)
                again, _ = _with_home_amounts(staged, fx, home_currency, open_at)
                old = again[["deal_id"]].merge(
                    staged[["deal_id", "amount_home"]], on="deal_id", how="left"
                )["amount_home"]
                moved = again[~_equal(again["amount_home"], old)]
                details["reconverted_after_rate_change"] = len(moved)
                valid = pd.concat([valid, moved], ignore_index=True)
            return valid, pd.concat([quarantined, rejected], ignore_index=True)

        with writer.batch() as batch:
            owner_team = None if config.team_field else self._owner_teams(batch)
            raw = pd.DataFrame(
                {
                    "deal_id": frame["Id"],
                    "customer_id": frame["AccountId"],
                    "name": frame["Name"],
                    "owner_id": frame["OwnerId"],
                    "team": frame[config.team_field]
                    if config.team_field
                    else frame["OwnerId"].map(owner_team),
                    "pipeline": frame[config.pipeline_field] if config.pipeline_field else pd.NA,
                    "stage": frame["StageName"],
                    "is_closed": frame["IsClosed"],
                    "is_won": frame["IsWon"],
                    "amount": frame["Amount"],
                    "currency": frame["CurrencyIsoCode"]
                    if org.multi_currency
                    else org.corporate_currency,
                    "created_at": frame["CreatedDate"],
                    "close_date": frame["CloseDate"],
                    # A Type missing from the map stays as it is, so conform() quarantines the
                    # deal with the reason instead of guessing its type.
                    "deal_type": frame[config.deal_type_field].replace(config.deal_type_map),
                    "last_modified_at": frame["SystemModstamp"],
                    "is_deleted": frame["IsDeleted"],
                },
                index=frame.index,
            )
            return self._merge(
                batch,
                DEALS,
                raw,
                extraction,
                client=client,
                calls_before=calls_before,
                details=details,
                enrich=convert,
            )

    # -- NPS --------------------------------------------------------------------------------

    def _sync_nps(
        self, writer: StagingWriter, client: SalesforceClient, org: _OrgFacts
    ) -> SyncReport:
        calls_before = client.api_calls
        config = self.settings.nps
        mode, warning = self._nps_mode(org)
        if mode == "none":
            if warning:
                log.warning(warning)
            with writer.batch() as batch:
                return batch.merge_changes(
                    NPS_RESPONSES,
                    conform(
                        pd.DataFrame({"response_id": []}), NPS_RESPONSES, source=self.name
                    ).valid,
                    quarantined=pd.DataFrame(),
                    cursor=None,
                    details={"nps_mode": "none", **({"warning": warning} if warning else {})},
                )
        if config.mode == "custom_object":
            raw, extraction = self._nps_from_custom_object(writer, client, org)
        else:
            raw, extraction = self._nps_from_feedback_management(writer, client, org)
        with writer.batch() as batch:
            return self._merge(
                batch,
                NPS_RESPONSES,
                raw,
                extraction,
                client=client,
                calls_before=calls_before,
                details={"nps_mode": mode},
            )

    def _nps_mode(self, org: _OrgFacts) -> tuple[str, str | None]:
        """(the NPS mode this sync uses, why NPS is not synced or None).

        Feedback Management (auto's first choice) needs its survey objects in the org and
        readable by the integration user; without them NPS is skipped with a warning and the
        rest of the sync goes on.
        """
        mode = self.settings.nps.mode
        if mode not in ("auto", "feedback_management"):
            return mode, None
        missing = [name for name in FEEDBACK_MANAGEMENT_OBJECTS if name not in org.objects]
        if not missing:
            return "feedback_management", None
        setting = "nps.mode is feedback_management but " if mode == "feedback_management" else ""
        return "none", (
            f"source '{self.name}': NPS responses are not synced: {setting}the org has no "
            f"Feedback Management objects {', '.join(missing)} readable by the integration "
            "user. Deals, customers and owners are synced. Enable Feedback Management and give "
            "the integration user read access to the survey objects, or set nps.mode to "
            "custom_object (your own NPS object) or none in krpulse.yaml."
        )

    def _nps_from_feedback_management(
        self, writer: StagingWriter, client: SalesforceClient, org: _OrgFacts
    ) -> tuple[pd.DataFrame, _Extraction]:
        config = self.settings.nps
        types = self._fields_of(client, org, "SurveyQuestionResponse")
        field_names = [
            "Id",
            "NumberValue",
            "ResponseId",
            "InvitationId",
            "SystemModstamp",
            *(["IsDeleted"] if "IsDeleted" in types else []),
            "Response.CompletionDateTime",
            "Response.SurveyId",
        ]
        conditions = [
            *filter_conditions({"Question.QuestionType": list(config.question_types)}),
            "Response.Status = 'Completed'",  # answers of unfinished surveys are not responses
        ]
        extraction = self._extract(
            writer,
            client,
            NPS_RESPONSES,
            "SurveyQuestionResponse",
            field_names,
            conditions,
            types,
            filters=filter_conditions(config.where),
        )
        frame = extraction.frame
        deleted = (
            frame["IsDeleted"].astype("string").str.lower().eq("true").fillna(False)
            if "IsDeleted" in frame
            else pd.Series(False, index=frame.index)
        )
        # The account a response is about is its SurveySubject, attached to the response or,
        # for invitations sent from an account, to the invitation.
        live = frame[~deleted]
        parents = pd.concat([live["ResponseId"], live["InvitationId"]]).dropna().unique().tolist()
        subjects = client.records_by_ids(
            "SurveySubject",
            ["ParentId", "SubjectId"],
            "ParentId",
            sorted(str(p) for p in parents),
            ["SubjectEntityType = 'Account'"],
        )
        subject = subjects.drop_duplicates("ParentId").set_index("ParentId")["SubjectId"]
        customer = frame["ResponseId"].map(subject).fillna(frame["InvitationId"].map(subject))
        raw = pd.DataFrame(
            {
                "response_id": frame["Id"],
                "customer_id": customer,
                "score": frame["NumberValue"],
                "submitted_at": frame["Response.CompletionDateTime"],
                "survey_id": frame["Response.SurveyId"],
                "comment": pd.NA,
                "last_modified_at": frame["SystemModstamp"],
                "is_deleted": deleted,
            },
            index=frame.index,
        )
        return raw, extraction

    def _nps_from_custom_object(
        self, writer: StagingWriter, client: SalesforceClient, org: _OrgFacts
    ) -> tuple[pd.DataFrame, _Extraction]:
        config = self.settings.nps
        object_name = str(config.object)
        types = self._fields_of(client, org, object_name)
        self._require_fields(
            types, object_name, {f"nps.fields.{k}": v for k, v in config.fields.items()}
        )
        field_names = _unique(
            [
                "Id",
                "SystemModstamp",
                *(["IsDeleted"] if "IsDeleted" in types else []),
                *config.fields.values(),
            ]
        )
        extraction = self._extract(
            writer,
            client,
            NPS_RESPONSES,
            object_name,
            field_names,
            [],
            types,
            filters=filter_conditions(config.where),
        )
        frame = extraction.frame
        raw = pd.DataFrame(
            {
                "response_id": frame["Id"],
                **{
                    column: frame[config.fields[column]] if column in config.fields else pd.NA
                    for column in ("customer_id", "score", "submitted_at", "survey_id", "comment")
                },
                "last_modified_at": frame["SystemModstamp"],
                "is_deleted": frame.get("IsDeleted", False),
            },
            index=frame.index,
        )
        return raw, extraction


def _rate_days(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Salesforce date values -> (day as datetime64, year). Years pandas cannot hold (0001-01-01
    opens the first period of every currency, 9999-12-31 closes none) give NaT and their year."""
    text = values.astype("string").str.slice(0, 10)
    year = pd.to_numeric(text.str.slice(0, 4), errors="coerce")
    representable = year.between(pd.Timestamp.min.year + 1, pd.Timestamp.max.year - 1)
    day = pd.to_datetime(text.where(representable), errors="coerce", format="%Y-%m-%d")
    return day, year


def rates_to_home(rates: pd.DataFrame, home_currency: str, corporate_currency: str) -> pd.DataFrame:
    """Salesforce conversion rates (units per corporate unit) -> canonical fx_rates to `home`.

    Salesforce states every rate against the corporate currency; krpulse needs rates to the
    reporting currency: rate_to_home(X) = rate(home) / rate(X), over the periods where both
    rates hold (dated rates change on their own dates per currency). A period that starts
    before 1970 (advanced currency management opens every currency's first period on
    0001-01-01) holds from STANDARD_RATES_FROM; NextStartDate 9999-12-31 or empty means open.

    The restatement is an as-of join: each currency's periods are cut at its own start and end
    dates and at the home currency's, and each cut looks up the rate of both currencies that
    holds then. Rows grow with currencies x periods, never with currencies x periods^2.
    """
    columns = ["currency", "rate_to_home", "valid_from", "valid_to"]
    if rates.empty:
        return pd.DataFrame(columns=columns)
    start, start_year = _rate_days(rates["StartDate"])
    end, end_year = _rate_days(rates["NextStartDate"])
    frame = pd.DataFrame(
        {
            "currency": rates["IsoCode"].astype(str).str.upper().to_numpy(),
            "rate": pd.to_numeric(rates["ConversionRate"], errors="coerce").to_numpy(),
            "start": start.where(~(start_year < STANDARD_RATES_FROM.year), STANDARD_RATES_FROM)
            .clip(lower=STANDARD_RATES_FROM)
            .to_numpy(),
            "end": end.where(end > STANDARD_RATES_FROM).to_numpy(),
        }
    )
    frame = frame.dropna(subset=["start", "rate"]).sort_values("start", kind="stable")
    home = home_currency.upper()
    home_rates = frame[frame["currency"] == home]
    if home_rates.empty and home == corporate_currency.upper():
        home_rates = pd.DataFrame(
            {"currency": [home], "rate": [1.0], "start": [STANDARD_RATES_FROM], "end": [pd.NaT]}
        )
    others = frame[frame["currency"] != home]
    if home_rates.empty or others.empty:
        return pd.DataFrame(columns=columns)
    # Cut points of every currency: its own period bounds and the home currency's.
    home_cuts = pd.concat([home_rates["start"], home_rates["end"]]).dropna().unique()
    currencies = others["currency"].unique()
    cuts = pd.concat(
        [
            others[["currency", "start"]].rename(columns={"start": "at"}),
            others[["currency", "end"]].rename(columns={"end": "at"}).dropna(),
            pd.DataFrame(
                {
                    "currency": currencies.repeat(len(home_cuts)),
                    "at": np.tile(home_cuts.astype("datetime64[ns]"), len(currencies)),
                }
            ),
        ],
        ignore_index=True,
    )
    cuts["at"] = cuts["at"].astype("datetime64[ns]")
    cuts = cuts.drop_duplicates().sort_values("at", kind="stable")
    own = pd.merge_asof(
        cuts,
        others[["currency", "start", "end", "rate"]].astype({"start": "datetime64[ns]"}),
        left_on="at",
        right_on="start",
        by="currency",
        direction="backward",
    )
    own.loc[own["end"].notna() & (own["at"] >= own["end"]), "rate"] = float("nan")
    both = pd.merge_asof(
        own.drop(columns=["start", "end"]),
        home_rates[["start", "end", "rate"]]
        .astype({"start": "datetime64[ns]"})
        .add_prefix("home_"),
        left_on="at",
        right_on="home_start",
        direction="backward",
    )
    both.loc[both["home_end"].notna() & (both["at"] >= both["home_end"]), "home_rate"] = float(
        "nan"
    )
    both = both.sort_values(["currency", "at"], kind="stable")
    both["valid_to"] = both.groupby("currency")["at"].shift(-1)
    both["rate_to_home"] = both["home_rate"] / both["rate"]
    held = both[both["rate_to_home"].notna()]
    return pd.DataFrame(
        {
            "currency": held["currency"].to_numpy(),
            "rate_to_home": held["rate_to_home"].to_numpy(),
            "valid_from": held["at"].dt.strftime("%Y-%m-%d").to_numpy(),
            "valid_to": held["valid_to"].dt.strftime("%Y-%m-%d").to_numpy(),
        }
    )


def _with_home_amounts(
    deals: pd.DataFrame, fx: pd.DataFrame, home_currency: str, open_deals_at: OpenDealRate
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deals with amount_home from the one money conversion; those it cannot convert, rejected."""
    if deals.empty:
        return deals, pd.DataFrame()
    # Salesforce never supplies amount_home: always convert with the staged (dated) rates.
    deals = deals.assign(amount_home=float("nan"))
    return convert_deals(deals, fx, home_currency=home_currency, open_deals_at=open_deals_at)


def _api_details(client: Any, extraction: Any) -> dict:
    """How an object was read and the org's API usage after it, for the sync report."""
    used, limit = client.api_usage or (None, None)
    return {"api_path": extraction.path, "api_usage_used": used, "api_usage_max": limit}


def _equal(left: pd.Series, right: pd.Series) -> Any:
    """Element-wise equality where two missing values are equal too."""
    left_values = pd.Series(left).reset_index(drop=True).astype(object)
    right_values = pd.Series(right).reset_index(drop=True).astype(object)
    both_missing = left_values.isna() & right_values.isna()
    return ((left_values == right_values) | both_missing).fillna(False).to_numpy(dtype=bool)


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))
