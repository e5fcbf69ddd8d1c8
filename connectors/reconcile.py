"""When a source sweeps its ids: the reconciliation cadence every CRM source shares.

Cursors see what changed; they cannot see what vanished without a trace (a Salesforce record
purged from the recycle bin, a HubSpot record purged after archiving) or what changed beside the
record (a HubSpot deal moved to another company without the deal being touched). A cheap
reconciliation pass catches those: it lists the ids the CRM still holds (ids only) and marks the
staged ones it no longer lists deleted, and re-reads associations. It runs on a cadence, and
after a long gap between syncs, because that is when cursors miss the most.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class ReconcileSettings(BaseModel):
    """`reconcile:` of a CRM source in krpulse.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Sweep at least this often (days); 0 sweeps on every sync.
    every_days: float = Field(default=7.0, ge=0)
    # ... and whenever this long passed since the previous sync (Salesforce empties its
    # recycle bin after 15 days: deletes older than that never reach queryAll).
    after_gap_days: float = Field(default=14.0, gt=0)


def reconciliation_due(
    state: dict, now: dt.datetime, settings: ReconcileSettings, *, first_sync: bool
) -> str | None:
    """Why the id sweep runs on this sync (a short reason for the report), or None.

    A first (full) sync reads everything and is itself a reconciliation.
    """
    if first_sync:
        return None
    reconciled = _moment(state.get("reconciled_at"))
    synced = _moment(state.get("synced_at"))
    if reconciled is None:
        return "never reconciled"
    if synced is not None and now - synced >= dt.timedelta(days=settings.after_gap_days):
        return f"{(now - synced).days} days since the previous sync"
    if now - reconciled >= dt.timedelta(days=settings.every_days):
        return f"last reconciled {(now - reconciled).days} days ago"
    return None


def next_state(state: dict, now: dt.datetime, *, reconciled: bool) -> dict:
    """The state to remember after a sync at `now` (a full sync counts as reconciled)."""
    out = {**state, "synced_at": now.isoformat()}
    if reconciled:
        out["reconciled_at"] = now.isoformat()
    return out


def _moment(value: object) -> dt.datetime | None:
    if not value:
        return None
    moment = dt.datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
