"""What every OKR-tool sink is, and the push driver: after the store commits, push what changed."""

from __future__ import annotations

import datetime as dt
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import pandas as pd
import requests

from core.numbers import is_missing
from okr_store.sinks.http import RetryPolicy, SinkError

PUSHED, UNCHANGED, FAILED = "pushed", "unchanged", "failed"
NO_VALUE, NOT_IN_STORE = "no_value", "not_in_store"


class Sink(ABC):
    """One OKR tool (or webhook) and the KRs it receives: `targets` maps "cycle/kr" to the
    tool's own id of that key result."""

    kind: ClassVar[str]

    def __init__(self, name: str, targets: Mapping[str, str]):
        self.name = name
        self.targets = dict(targets)

    @abstractmethod
    def value_for(self, row: Mapping[str, Any]) -> float | None:
        """The number the tool receives for this KR's current progress row (None: nothing)."""

    @abstractmethod
    def push(
        self,
        session: requests.Session,
        target_id: str,
        value: float,
        row: Mapping[str, Any],
        policy: RetryPolicy,
    ) -> None:
        """Send `value` to the tool's key result `target_id`; raise SinkError on failure."""


@dataclass(frozen=True)
class PushOutcome:
    sink: str
    cycle: str
    kr: str
    target_id: str
    outcome: str  # pushed | unchanged | failed | no_value | not_in_store
    value: float | None = None
    as_of: dt.date | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def push_current_progress(
    store,  # noqa: ANN001 - okr_store.repository.OkrStore (imported lazily: it imports us not)
    sinks: Sequence[Sink],
    *,
    policy: RetryPolicy | None = None,
    session: requests.Session | None = None,
) -> list[PushOutcome]:
    """Push each configured KR's current value to its tools; call after the store committed.

    A value equal to what the tool last received is skipped without a call. A failure is
    recorded in push_state (the progress rows are never touched) and, because the tool still
    lacks the value, tried again on the next run.
    """
    if not sinks:
        return []
    policy = policy or RetryPolicy()
    current = store.progress()
    rows: dict[tuple[str, str], dict] = {}
    if not current.empty:
        rows = {
            (rec["cycle"], rec["kr"]): rec
            for rec in current.astype(object).where(current.notna(), None).to_dict("records")
        }
    state = store.push_state()
    previous: dict[tuple[str, str, str], dict] = {}
    if not state.empty:
        previous = {
            (rec["sink"], rec["cycle"], rec["kr"]): rec
            for rec in state.astype(object).where(state.notna(), None).to_dict("records")
        }
    own_session = session is None
    session = session or requests.Session()
    outcomes: list[PushOutcome] = []
    try:
        for sink in sinks:
            for ref, target_id in sink.targets.items():
                cycle, kr = ref.split("/", 1)
                outcomes.append(
                    _push_one(
                        store,
                        sink,
                        session,
                        policy,
                        cycle,
                        kr,
                        target_id,
                        rows.get((cycle, kr)),
                        previous.get((sink.name, cycle, kr)),
                    )
                )
    finally:
        if own_session:
            session.close()
    return outcomes


def _push_one(
    store,  # noqa: ANN001
    sink: Sink,
    session: requests.Session,
    policy: RetryPolicy,
    cycle: str,
    kr: str,
    target_id: str,
    row: dict | None,
    previous: dict | None,
) -> PushOutcome:
    outcome = {"sink": sink.name, "cycle": cycle, "kr": kr, "target_id": target_id}
    if row is None:
        return PushOutcome(**outcome, outcome=NOT_IN_STORE)
    value = sink.value_for(row)
    as_of = row["as_of"]
    if is_missing(value):
        return PushOutcome(**outcome, outcome=NO_VALUE, as_of=as_of)
    value = float(value)
    last = previous.get("last_pushed_value") if previous else None
    if (
        previous is not None
        and previous["target_id"] == target_id
        and not is_missing(last)
        and math.isclose(last, value, rel_tol=1e-9, abs_tol=1e-12)
    ):
        if previous.get("failures"):
            # The tool already holds this value (a later value failed, then it came back).
            store.record_push(sink.name, cycle, kr, target_id, value, previous["last_pushed_as_of"])
        return PushOutcome(**outcome, outcome=UNCHANGED, value=value, as_of=as_of)
    try:
        sink.push(session, target_id, value, row, policy)
    except SinkError as exc:
        store.record_push_failure(sink.name, cycle, kr, target_id, str(exc))
        return PushOutcome(**outcome, outcome=FAILED, value=value, as_of=as_of, error=str(exc))
    store.record_push(sink.name, cycle, kr, target_id, value, as_of)
    return PushOutcome(**outcome, outcome=PUSHED, value=value, as_of=as_of)


def outcomes_frame(outcomes: Sequence[PushOutcome]) -> pd.DataFrame:
    return pd.DataFrame(
        [o.as_dict() for o in outcomes],
        columns=["sink", "cycle", "kr", "target_id", "outcome", "value", "as_of", "error"],
    )
