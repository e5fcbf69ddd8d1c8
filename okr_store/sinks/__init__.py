"""Pushes of KR progress to OKR tools (Perdoo, Weekdone, a signed webhook), after the store commits."""

from okr_store.sinks.base import (
    FAILED,
    NO_VALUE,
    NOT_IN_STORE,
    PUSHED,
    UNCHANGED,
    PushOutcome,
    Sink,
    outcomes_frame,
    push_current_progress,
)
from okr_store.sinks.http import RetryPolicy, SinkError, TransientSinkError
from okr_store.sinks.perdoo import PerdooSink
from okr_store.sinks.webhook import WebhookSink
from okr_store.sinks.weekdone import WeekdoneSink

__all__ = [
    "FAILED",
    "NO_VALUE",
    "NOT_IN_STORE",
    "PUSHED",
    "UNCHANGED",
    "PerdooSink",
    "PushOutcome",
    "RetryPolicy",
    "Sink",
    "SinkError",
    "TransientSinkError",
    "WebhookSink",
    "WeekdoneSink",
    "outcomes_frame",
    "push_current_progress",
]
