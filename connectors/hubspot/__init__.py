"""The HubSpot source: owners, companies, deals and NPS survey responses, synced incrementally."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from connectors.base import ObjectPlan, SourceCheck, SourceError
from connectors.hubspot.helpers import HubSpotApi, MissingScopes
from connectors.hubspot.settings import (
    COMPANIES_TYPE,
    COMPANY_PROPERTIES,
    CONTACTS_TYPE,
    DEAL_PROPERTIES,
    DEALS_TYPE,
    FEEDBACK_PROPERTIES,
    FEEDBACK_TYPE,
    LAST_MODIFIED,
    MERGED_IDS,
    NPS_SURVEY_TYPE,
    OBJECT_ID,
    PRIMARY_CONTACT_TO_COMPANY,
    PRIMARY_DEAL_TO_COMPANY,
    HubSpotSourceSettings,
)
from connectors.money import convert_deals
from connectors.reconcile import next_state, reconciliation_due
from core.canonical import (
    CANONICAL_TABLES,
    CUSTOMERS,
    DEALS,
    NPS_RESPONSES,
    OWNERS,
    conform,
)
from core.sync import StagingBatch, StagingWriter, SyncReport

__all__ = ["HubSpotSource", "HubSpotSourceSettings"]

log = logging.getLogger(__name__)

SYNC_ORDER = (OWNERS, CUSTOMERS, DEALS, NPS_RESPONSES)
# Feedback submissions have no primary contact label: there is one submitting contact.
NO_PRIMARY_LABEL = -1


def team_key(name: pd.Series, teams: dict[str, str]) -> pd.Series:
    """HubSpot team name -> krpulse team key: the configured mapping, else a slug of the name."""
    slug = name.str.strip().str.lower().str.replace(r"[^a-z0-9]+", "-", regex=True).str.strip("-")
    return name.map(teams).fillna(slug).astype("string")


def _properties_frame(records: Sequence[Any], names: Sequence[str]) -> pd.DataFrame:
    """The records' properties as text, blanks as NA.

    HubSpot returns every property as a string and unset ones as "" or null: nothing is
    parsed here, conform() parses each canonical column deliberately and quarantines the rest.
    """
    frame = pd.DataFrame.from_records(
        [record.properties or {} for record in records], columns=list(names)
    ).astype("string")
    frame = frame.mask(frame.apply(lambda column: column.str.strip().eq("")).fillna(False))
    frame.insert(0, "id", pd.Series([str(record.id) for record in records], dtype="string"))
    return frame


def _local_dates(values: pd.Series, timezone: str) -> pd.Series:
    """HubSpot datetimes -> YYYY-MM-DD in the reporting timezone; unparseable text stays as is."""
    stamps = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    local = stamps.dt.tz_convert(timezone).dt.strftime("%Y-%m-%d").astype("string")
    return local.where(stamps.notna(), values)


def _merged_ids(raw: pd.DataFrame) -> set[str]:
    """Ids merged into the records of `raw`: HubSpot lists them in hs_merged_object_ids
    ("123;456") on the surviving record; the merged-away record is gone from every list."""
    if MERGED_IDS not in raw:
        return set()
    parts = raw[MERGED_IDS].dropna().astype(str).str.split(";").explode().str.strip()
    return set(parts[parts.str.fullmatch(r"\d+").fillna(False)])


def _stages_fingerprint(stages: dict[tuple[str, str], dict]) -> str:
    """A short hash of the pipelines' stage metadata, remembered between syncs."""
    text = json.dumps(sorted((list(key), facts) for key, facts in stages.items()), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _reject(frame: pd.DataFrame, mask: pd.Series, reason: pd.Series | str) -> pd.DataFrame:
    """Rows quarantined before conform() for a HubSpot-specific reason, in quarantine's shape."""
    rejected = frame[mask].astype("string")
    return rejected.assign(reason=reason[mask] if isinstance(reason, pd.Series) else reason)


@dataclass
class HubSpotSource:
    """A HubSpot portal read through its private app's access token.

    The first sync lists every record; later syncs search what changed since the cursor (minus
    a lookback), read archived records as deletes, and re-read the company association of each
    changed deal. Each object merges in its own transaction, so its cursor only moves when its
    rows are committed.
    """

    name: str
    settings: HubSpotSourceSettings
    # None: read at sync time from the environment variable krpulse.yaml names (the CLI);
    # Dagster's HubSpotResource hands it over from dg.EnvVar instead.
    access_token: str | None = field(default=None, repr=False)
    timezone: str = "UTC"
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    objects: tuple[str, ...] = SYNC_ORDER
    # When "now" is, for the reconciliation cadence (tests move it).
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC), repr=False)
    last_api: HubSpotApi | None = field(default=None, init=False, repr=False)

    def token(self) -> str:
        """The private app's access token; a clear error when its variable is not set."""
        token = self.access_token or os.environ.get(self.settings.access_token_env, "").strip()
        if not token:
            raise SourceError(
                f"source '{self.name}': environment variable {self.settings.access_token_env} "
                "is not set; export the HubSpot private app's access token in it"
            )
        return token

    def _api(self) -> HubSpotApi:
        return HubSpotApi(
            source=self.name,
            base_url=self.settings.base_url.rstrip("/"),
            access_token=self.token(),
            token_env=self.settings.access_token_env,
            timeout_seconds=self.settings.timeout_seconds,
            max_retries=self.settings.max_retries,
            backoff_seconds=self.settings.backoff_seconds,
            sleep=self.sleep,
        )

    @property
    def company_properties(self) -> tuple[str, ...]:
        mapped = self.settings.company_properties.model_dump().values()
        return tuple(dict.fromkeys([*COMPANY_PROPERTIES, *(p for p in mapped if p)]))

    def sync(self, writer: StagingWriter, *, home_currency: str) -> list[SyncReport]:
        """Hand what changed in the portal to `writer`; one report per canonical object."""
        api = self.last_api = self._api()
        cursors = {t: writer.cursor(t) for t in SYNC_ORDER}
        # Rates staged by any source (e.g. a files source with fx_rates.csv) convert deals
        # whose home amount HubSpot cannot supply in the reporting currency.
        fx_rates = self._fx_rates(writer)
        nps_warning = self._verify_properties(api)
        portal_currency = self._portal_currency(api)

        api.bucket = OWNERS
        owners = self._owners_frame(api.list_owners())
        with writer.batch() as batch:
            self._restamp_teams(batch, owners)
            reports = [
                self._merge(
                    batch, api, OWNERS, owners, owners.iloc[0:0], cursor=None, fetched=len(owners)
                )
            ]
        team_of_owner = owners.set_index("owner_id")["team"]

        api.bucket = DEALS
        stages = api.deal_stages()

        merged_companies: set[str] = set()  # ids merged away, their deals and NPS re-read below
        reports.append(
            self._sync_object(
                writer,
                api,
                CUSTOMERS,
                COMPANIES_TYPE,
                self.company_properties,
                cursors[CUSTOMERS],
                lambda raw: self._customers(raw, team_of_owner),
                merged_into=merged_companies,
            )
        )
        # Closed/won and labels are derived from the stage metadata: when it changed, every
        # deal is listed again (a stage edit touches no deal).
        fingerprint = _stages_fingerprint(stages)
        known = writer.state(DEALS).get("stages")
        relist = "deal stage metadata changed" if known and known != fingerprint else None

        def restage(batch, valid, staged, *, reconciled):  # noqa: ANN001, ANN202
            return self._reassociate(api, valid, staged, merged_companies, everything=reconciled)

        reports.append(
            self._sync_object(
                writer,
                api,
                DEALS,
                DEALS_TYPE,
                DEAL_PROPERTIES,
                cursors[DEALS],
                lambda raw: self._deals(
                    raw, api, stages, team_of_owner, fx_rates, home_currency, portal_currency
                ),
                relist=relist,
                state_update={"stages": fingerprint},
                restage=restage,
            )
        )
        if nps_warning is not None:
            reports.append(self._skip_nps(writer, nps_warning))
            return reports
        reports.append(
            self._sync_object(
                writer,
                api,
                NPS_RESPONSES,
                FEEDBACK_TYPE,
                FEEDBACK_PROPERTIES,
                cursors[NPS_RESPONSES],
                lambda raw: self._nps_responses(raw, api),
                restage=restage,
            )
        )
        return reports

    def check(self, *, home_currency: str) -> SourceCheck:
        """Read the portal's metadata, and say what a sync will read and what is missing."""
        report = SourceCheck(self.name, "hubspot")
        report.facts["API"] = (
            f"private app token from ${self.settings.access_token_env} at {self.settings.base_url}"
        )
        try:
            api = self._api()
            account = api.account_details()
            report.facts["portal"] = (
                f"{account.get('portalId')} ({account.get('accountType', '?')}), time zone "
                f"{account.get('timeZone')}"
            )
            self._check_portal(report, api, account, home_currency)
        except SourceError as exc:
            report.problems.append(str(exc))
        return report

    def _check_portal(
        self, report: SourceCheck, api: HubSpotApi, account: dict, home_currency: str
    ) -> None:
        settings = self.settings
        currency = settings.portal_currency or str(account.get("companyCurrency") or "") or None
        origin = (
            "portal_currency in krpulse.yaml"
            if settings.portal_currency
            else "the portal's account details"
        )
        report.facts["currency mode"] = (
            f"company currency {currency or 'unknown'} (from {origin}), reporting {home_currency}; "
            + (
                "amount_in_home_currency used as is"
                if currency == home_currency.upper()
                else "other currencies converted with fx_rates staged by "
                + (", ".join(settings.fx_rates_from) if settings.fx_rates_from else "any source")
            )
        )
        wanted = [
            (CUSTOMERS, COMPANIES_TYPE, [*self.company_properties, MERGED_IDS]),
            (DEALS, DEALS_TYPE, [*DEAL_PROPERTIES, MERGED_IDS]),
        ]
        if settings.nps != "none":
            wanted.append((NPS_RESPONSES, FEEDBACK_TYPE, list(FEEDBACK_PROPERTIES)))
        nps = (
            "none (nps: none in krpulse.yaml)" if settings.nps == "none" else "feedback_submissions"
        )
        lacking: list[str] = []
        for table, object_type, properties in wanted:
            try:
                known = api.read_properties(object_type)
            except MissingScopes as exc:
                lacking += exc.scopes
                if object_type == FEEDBACK_TYPE:
                    nps = "none (the private app lacks the feedback-submissions scope)"
                    report.warnings.append(
                        f"source '{self.name}': NPS responses will not be synced: add "
                        f"{', '.join(exc.scopes)} to the private app, or set `nps: none`"
                    )
                else:
                    report.problems.append(str(exc))
                continue
            absent = [p for p in properties if p not in known and p != MERGED_IDS]
            if absent:
                report.problems.append(
                    f"source '{self.name}': the portal has no {object_type} properties "
                    f"{', '.join(absent)}; create them or map company_properties in krpulse.yaml"
                )
            how = "listed first, then searched by hs_lastmodifieddate"
            report.plans.append(ObjectPlan(table, f"{object_type}, {how}", properties))
        report.plans.insert(
            0,
            ObjectPlan(
                OWNERS,
                "owners (active and archived), read whole every sync",
                ["id", "email", "firstName", "lastName", "teams"],
            ),
        )
        report.facts["scopes"] = (
            "every scope krpulse reads with"
            if not lacking
            else f"missing {', '.join(sorted(set(lacking)))}"
        )
        report.facts["NPS mode"] = nps
        cadence = settings.reconcile
        report.facts["reconciliation"] = (
            f"id sweep and association re-read every {cadence.every_days:g} days and after "
            f"{cadence.after_gap_days:g}-day gaps; merges via hs_merged_object_ids on every sync"
        )

    def _restamp_teams(self, batch: StagingBatch, owners: pd.DataFrame) -> None:
        """An owner who changed team takes the deals and companies they own along (teams are
        stamped on staging; see README "Team attribution")."""
        staged = batch.staged(OWNERS)[["owner_id", "team"]]
        before = owners[["owner_id", "team"]].merge(
            staged, on="owner_id", how="inner", suffixes=("", "_staged")
        )
        moved = before[
            before["team"].astype(object).fillna("")
            != before["team_staged"].astype(object).fillna("")
        ]
        for table in (DEALS, CUSTOMERS):
            batch.reassign_teams(table, moved[["owner_id", "team"]])

    def _reassociate(
        self,
        api: HubSpotApi,
        valid: pd.DataFrame,
        staged: pd.DataFrame,
        merged_companies: set[str],
        *,
        everything: bool,
    ) -> pd.DataFrame:
        """Staged deals (or NPS responses) whose company changed without the record changing,
        with their new one.

        A company merge re-associates its deals and contacts to the surviving company without
        touching them; so does moving a deal in the UI's association card. Records of merged
        companies are re-read on every sync, every live record's association on the
        reconciliation pass.
        """
        id_col = "deal_id" if "deal_id" in staged else "response_id"
        live = staged[~staged["is_deleted"].fillna(False).to_numpy(dtype=bool)]
        live = live[~live[id_col].isin(valid[id_col])]
        if not everything:
            live = live[live["customer_id"].isin(merged_companies)]
        if live.empty:
            return valid
        if id_col == "deal_id":
            company_of, _ = api.primary_associations(
                DEALS_TYPE, COMPANIES_TYPE, live[id_col], primary_type_id=PRIMARY_DEAL_TO_COMPANY
            )
        else:
            company_of = self._companies_of_responses(api, live[id_col])
        now = live[id_col].map(company_of).astype("string")
        moved = live[(now.fillna("") != live["customer_id"].fillna("")).to_numpy()]
        moved = moved.assign(customer_id=now[moved.index])
        return pd.concat([valid, moved], ignore_index=True) if not moved.empty else valid

    def _companies_of_responses(self, api: HubSpotApi, ids: pd.Series) -> dict[str, str]:
        """Feedback submission id -> the primary company of the contact who submitted it."""
        contact_of, _ = api.primary_associations(
            FEEDBACK_TYPE, CONTACTS_TYPE, ids, primary_type_id=NO_PRIMARY_LABEL
        )
        company_of_contact, _ = api.primary_associations(
            CONTACTS_TYPE,
            COMPANIES_TYPE,
            sorted(set(contact_of.values())),
            primary_type_id=PRIMARY_CONTACT_TO_COMPANY,
        )
        return {
            response: company_of_contact[contact]
            for response, contact in contact_of.items()
            if contact in company_of_contact
        }

    def _portal_currency(self, api: HubSpotApi) -> str | None:
        """The configured portal_currency, else the portal's own companyCurrency."""
        if self.settings.portal_currency:
            return self.settings.portal_currency
        api.bucket = DEALS
        currency = str(api.account_details().get("companyCurrency") or "").strip().upper()
        return currency or None

    def _skip_nps(self, writer: StagingWriter, warning: str) -> SyncReport:
        """NPS cannot be read: say so in the report and the log; the rest of the sync stands."""
        log.warning(warning)
        empty = conform(pd.DataFrame({"response_id": []}), NPS_RESPONSES, source=self.name)
        with writer.batch() as batch:
            return batch.merge_changes(
                NPS_RESPONSES,
                empty.valid,
                quarantined=pd.DataFrame(),
                cursor=None,
                details={"nps_mode": "none", "warning": warning},
            )

    def _fx_rates(self, writer: StagingWriter) -> pd.DataFrame:
        """Other sources' staged rates; where two give a rate for the same currency and day,
        the one listed first in `fx_rates_from` (else the first by name) wins."""
        wanted = self.settings.fx_rates_from
        rates = writer.fx_rates(wanted)
        order = {name: i for i, name in enumerate(wanted or [])}
        rank = rates["source"].map(order).fillna(len(order))
        rates = rates.assign(_rank=rank).sort_values(["_rank", "source"], kind="stable")
        return rates.drop_duplicates(["currency", "valid_from"]).drop(columns="_rank")

    # ------------------------------------------------------------------------------------------
    # Sync steps

    def _verify_properties(self, api: HubSpotApi) -> str | None:
        """Fail before reading any record when the portal lacks a property krpulse needs.

        Returns why NPS responses cannot be synced (settings, or a private app without the
        feedback-submissions scope), or None when they can: deals and companies sync anyway.
        """
        wanted = {
            (DEALS, DEALS_TYPE): DEAL_PROPERTIES,
            (CUSTOMERS, COMPANIES_TYPE): self.company_properties,
        }
        nps_warning = None
        if self.settings.nps == "none":
            nps_warning = f"source '{self.name}': nps is 'none' in krpulse.yaml; no NPS synced"
        else:
            wanted[(NPS_RESPONSES, FEEDBACK_TYPE)] = FEEDBACK_PROPERTIES
        missing = []
        for (table, object_type), names in wanted.items():
            api.bucket = table
            try:
                known = api.read_properties(object_type)
            except MissingScopes as exc:
                if object_type != FEEDBACK_TYPE:
                    raise
                nps_warning = (
                    f"source '{self.name}': NPS responses are not synced: the private app lacks "
                    f"the scope(s) {', '.join(exc.scopes)} that feedback submissions need. Deals "
                    "and companies are synced. Add the scope under Settings > Integrations > "
                    "Private Apps > Scopes, or set `nps: none` for this source to silence this."
                )
                continue
            missing += [f"{object_type}.{name}" for name in names if name not in known]
        if missing:
            raise SourceError(
                f"source '{self.name}': the HubSpot portal has no propert"
                f"{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)} (or the private "
                "app may not read them). Create them in HubSpot, or point `company_properties:` "
                "of this source in krpulse.yaml at the properties your portal uses."
            )
        return nps_warning

    def _sync_object(
        self,
        writer: StagingWriter,
        api: HubSpotApi,
        table: str,
        object_type: str,
        properties: Sequence[str],
        cursor: dt.datetime | None,
        build: Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame, dict]],
        *,
        relist: str | None = None,
        state_update: dict | None = None,
        restage: Callable[..., pd.DataFrame] | None = None,
        merged_into: set[str] | None = None,
    ) -> SyncReport:
        """Read what changed (everything on the first sync, or when `relist` says why), build
        canonical rows, and merge them with every way a record can leave: archived, merged
        into another (hs_merged_object_ids), no longer kept by `build` (a survey that is not
        NPS any more), or, when the reconciliation pass is due, missing from the list of ids
        the portal still holds."""
        api.bucket = table
        basic_api, search_api = {
            COMPANIES_TYPE: (api.companies_basic, api.companies_search),
            DEALS_TYPE: (api.deals_basic, api.deals_search),
            FEEDBACK_TYPE: (api.feedback_basic, api.feedback_search),
        }[object_type]
        state, now = writer.state(table), self.clock()
        mergeable = object_type in (DEALS_TYPE, COMPANIES_TYPE)
        if mergeable:
            properties = [*properties, MERGED_IDS]
        full = cursor is None or relist is not None
        present: set[str] | None = None
        reason = reconciliation_due(state, now, self.settings.reconcile, first_sync=full)
        if full:
            records = api.list_all(object_type, basic_api, properties)
            windows, archived = 0, []
            present = {str(record.id) for record in records}
        else:
            since = cursor - dt.timedelta(minutes=self.settings.lookback_minutes)
            # The search has no survey-type filter: a record that left it must come back too.
            records, windows = api.search_changed(object_type, search_api, properties, since=since)
            # An archived survivor of a merge still names what was merged into it.
            archived = api.list_all(
                object_type,
                basic_api,
                [OBJECT_ID, *([MERGED_IDS] if mergeable else [])],
                archived=True,
            )
            if reason is not None:
                present = {str(r.id) for r in api.list_all(object_type, basic_api, [OBJECT_ID])}
        raw = _properties_frame(records, properties)
        valid, quarantined, details = build(raw)
        id_col = CANONICAL_TABLES[table].id_column
        merged = _merged_ids(raw)
        if archived and mergeable:
            merged |= _merged_ids(_properties_frame(archived, [MERGED_IDS]))
        if merged_into is not None:
            merged_into.update(merged)
        kept = set(valid[id_col].astype(str))
        if id_col in quarantined:
            kept |= set(quarantined[id_col].dropna().astype(str))
        left_filter = set(raw["id"].astype(str)) - kept

        modified = pd.to_datetime(raw[LAST_MODIFIED], errors="coerce", utc=True, format="ISO8601")
        newest = modified.max() if modified.notna().any() else None
        candidates = [
            c for c in (cursor, newest.to_pydatetime() if newest is not None else None) if c
        ]
        new_cursor = max(candidates) if candidates else None

        details = {
            "mode": "incremental" if not full else ("full" if cursor is None else "relisted"),
            "relisted_because": relist or "",
            "search_windows": windows,
            "archived_listed": len(archived),
            "merged_away": len(merged),
            "left_filter": len(left_filter),
            "reconciled": reason or "",
            "rate_limit_waits": api.rate_limit_waits[table],
            **details,
        }
        with writer.batch() as batch:
            staged = batch.staged(table)
            live = set(staged.loc[~staged["is_deleted"].fillna(False).to_numpy(dtype=bool), id_col])
            gone = {str(record.id) for record in archived} | merged | left_filter
            if present is not None:
                gone |= live - present
                details["vanished"] = len((live - present) - kept)
            if restage is not None:
                alive = staged[~staged[id_col].isin(gone)]
                valid = restage(batch, valid, alive, reconciled=present is not None)
            remembered = {**state, **(state_update or {})}
            batch.set_state(table, next_state(remembered, now, reconciled=present is not None))
            return self._merge(
                batch,
                api,
                table,
                valid,
                quarantined,
                cursor=new_cursor,
                fetched=len(records),
                deleted_ids=sorted(gone),
                details=details,
            )

    def _merge(
        self,
        batch: StagingBatch,
        api: HubSpotApi,
        table: str,
        valid: pd.DataFrame,
        quarantined: pd.DataFrame,
        *,
        cursor: dt.datetime | None,
        fetched: int,
        deleted_ids: Sequence[str] = (),
        details: dict | None = None,
    ) -> SyncReport:
        """Merge only the rows that differ from staging, so `changed` means changed in HubSpot."""
        id_col = CANONICAL_TABLES[table].id_column
        staged = batch.staged(table)

        def keys(frame: pd.DataFrame) -> pd.MultiIndex:
            fingerprint = pd.util.hash_pandas_object(frame.astype("string"), index=False)
            return pd.MultiIndex.from_arrays([frame[id_col].astype(str), fingerprint.to_numpy()])

        changed = valid[~keys(valid).isin(keys(staged))] if not staged.empty else valid
        live = staged
        if "is_deleted" in staged.columns:
            live = staged[~staged["is_deleted"].fillna(False).to_numpy(dtype=bool)]
        gone = set(deleted_ids) & set(live[id_col].astype(str)) - set(valid[id_col].astype(str))
        return batch.merge_changes(
            table,
            changed.reset_index(drop=True),
            quarantined=quarantined,
            cursor=cursor,
            deleted_ids=sorted(gone),
            fetched=fetched,
            api_calls=api.calls[table],
            details=details or {},
        )

    # ------------------------------------------------------------------------------------------
    # HubSpot records -> canonical frames

    def _owners_frame(self, owners: Sequence[Any]) -> pd.DataFrame:
        def primary_team(owner: Any) -> str | None:
            teams = owner.teams or []
            chosen = next((t for t in teams if t.primary), teams[0] if teams else None)
            return chosen.name if chosen else None

        raw = pd.DataFrame(
            {
                "owner_id": [str(o.id) for o in owners],
                "name": [" ".join(p for p in (o.first_name, o.last_name) if p) for o in owners],
                "email": [o.email for o in owners],
                "team": [primary_team(o) for o in owners],
            },
            dtype="string",
        )
        # An owner listed as active and as archived (re-activated users) counts once, active.
        raw = raw.drop_duplicates(subset=["owner_id"], keep="first")
        raw["team"] = team_key(raw["team"], self.settings.teams)
        conformed = conform(raw, OWNERS, source=self.name)
        return conformed.valid

    def _customers(
        self, raw: pd.DataFrame, team_of_owner: pd.Series
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        mapped = self.settings.company_properties

        def column(prop: str | None) -> pd.Series:
            return raw[prop] if prop else pd.Series(pd.NA, index=raw.index, dtype="string")

        customers = pd.DataFrame(
            {
                "customer_id": raw["id"],
                "name": raw["name"],
                "segment": column(mapped.segment),
                "region": column(mapped.region),
                "industry": column(mapped.industry),
                "owner_id": raw["hubspot_owner_id"],
                "team": raw["hubspot_owner_id"].map(team_of_owner),
                "created_at": raw["createdate"],
                "last_modified_at": raw[LAST_MODIFIED],
                "is_deleted": "false",
            }
        )
        conformed = conform(customers, CUSTOMERS, source=self.name)
        return conformed.valid, conformed.quarantined, {}

    def _deals(
        self,
        raw: pd.DataFrame,
        api: HubSpotApi,
        stages: dict[tuple[str, str], dict],
        team_of_owner: pd.Series,
        fx_rates: pd.DataFrame,
        home_currency: str,
        portal_currency: str | None,
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        company_of_deal, ambiguous = api.primary_associations(
            DEALS_TYPE, COMPANIES_TYPE, raw["id"], primary_type_id=PRIMARY_DEAL_TO_COMPANY
        )
        stage_table = pd.DataFrame(
            [{"pipeline_id": p, "stage_id": s, **facts} for (p, s), facts in stages.items()],
            columns=["pipeline_id", "stage_id", "pipeline", "stage", "is_closed", "is_won"],
        ).astype({"pipeline_id": "string", "stage_id": "string"})
        with_stage = raw[["pipeline", "dealstage"]].merge(
            stage_table,
            left_on=["pipeline", "dealstage"],
            right_on=["pipeline_id", "stage_id"],
            how="left",
            suffixes=("_id", ""),
        )
        with_stage.index = raw.index
        # amount_in_home_currency is in the portal's currency: usable only when that is ours.
        supplied_home = (
            raw["amount_in_home_currency"]
            if portal_currency and portal_currency == home_currency.upper()
            else pd.Series(pd.NA, index=raw.index, dtype="string")
        )
        deal_types = {k.strip().lower(): v for k, v in self.settings.deal_types.items()}
        deal_type = raw["dealtype"].str.strip().str.lower().map(deal_types)
        flags = {True: "true", False: "false"}
        deals = pd.DataFrame(
            {
                "deal_id": raw["id"],
                "customer_id": raw["id"].map(company_of_deal),
                "name": raw["dealname"],
                "owner_id": raw["hubspot_owner_id"],
                "team": raw["hubspot_owner_id"].map(team_of_owner),
                "pipeline": with_stage["pipeline"],
                "stage": with_stage["stage"],
                "is_closed": with_stage["is_closed"].map(flags),
                "is_won": with_stage["is_won"].map(flags),
                "amount": raw["amount"],
                "currency": raw["deal_currency_code"]
                .str.strip()
                .str.upper()
                .fillna(portal_currency or pd.NA),
                "amount_home": supplied_home,
                "created_at": raw["createdate"],
                "close_date": _local_dates(raw["closedate"], self.timezone),
                # Unmapped values pass through so conform() quarantines them by name.
                "deal_type": deal_type.fillna(raw["dealtype"]),
                "last_modified_at": raw[LAST_MODIFIED],
                "is_deleted": "false",
            }
        ).astype("string")

        unknown_stage = with_stage["stage"].isna() & raw["dealstage"].notna()
        no_currency = deals["currency"].isna() & ~unknown_stage
        rejected = [
            _reject(
                deals,
                unknown_stage,
                "dealstage '"
                + raw["dealstage"].fillna("")
                + "' is not a stage of pipeline '"
                + raw["pipeline"].fillna("")
                + "' (per the pipelines API)",
            ),
            _reject(
                deals,
                no_currency,
                "no deal_currency_code, and the portal's account details name no company "
                "currency (set portal_currency for this source)",
            ),
        ]
        conformed = conform(deals[~(unknown_stage | no_currency)], DEALS, source=self.name)
        valid = conformed.valid
        valid, unconvertible = convert_deals(valid, fx_rates, home_currency=home_currency)
        rejected.append(unconvertible)
        bad = [frame for frame in (conformed.quarantined, *rejected) if not frame.empty]
        quarantined = pd.concat(bad, ignore_index=True) if bad else conformed.quarantined
        return valid, quarantined, {"deals_with_several_companies_none_primary": ambiguous}

    def _nps_responses(
        self, raw: pd.DataFrame, api: HubSpotApi
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        is_nps = raw["hs_survey_type"].str.strip().str.upper().eq(NPS_SURVEY_TYPE).fillna(False)
        responses = raw[is_nps.to_numpy(dtype=bool)]
        customer_id = responses["id"].map(self._companies_of_responses(api, responses["id"]))
        frame = pd.DataFrame(
            {
                "response_id": responses["id"],
                "customer_id": customer_id,
                "score": responses["hs_value"],
                "submitted_at": responses["hs_submission_timestamp"],
                "survey_id": responses["hs_survey_id"],
                "last_modified_at": responses[LAST_MODIFIED],
                "is_deleted": "false",
            }
        )
        conformed = conform(frame, NPS_RESPONSES, source=self.name)
        details = {
            "other_survey_types_skipped": int((~is_nps).sum()),
            "responses_without_company": int(customer_id.isna().sum()),
        }
        return conformed.valid, conformed.quarantined, details
