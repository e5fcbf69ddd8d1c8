"""core's small shared helpers: Retry-After in both of its forms, missing numbers."""

from __future__ import annotations

import datetime as dt
import email.utils
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.http import retry_after_seconds
from core.numbers import is_missing, json_value


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_in_seconds(seconds):
    assert retry_after_seconds(str(seconds)) == seconds


@given(st.integers(min_value=5, max_value=86_400))
def test_retry_after_as_an_http_date_is_the_time_until_then(seconds):
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    waited = retry_after_seconds(email.utils.format_datetime(when, usegmt=True))
    assert waited == pytest.approx(seconds, abs=2)


@pytest.mark.parametrize("value", [None, "", "soon", "Mon, 99 Foo 2026"])
def test_retry_after_unreadable_or_absent_is_none(value):
    assert retry_after_seconds(value) is None


def test_a_past_http_date_means_no_wait():
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize("value", [None, pd.NA, pd.NaT, math.nan, np.float64("nan")])
def test_missing_values_are_missing_and_json_null(value):
    assert is_missing(value) and json_value(value) is None


@pytest.mark.parametrize("value", [0, 0.0, "", "x", False, math.inf])
def test_present_values_are_not_missing(value):
    assert not is_missing(value)
