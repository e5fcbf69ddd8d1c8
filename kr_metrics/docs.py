"""docs/metrics.md, generated from the metric library so the documentation cannot drift from the code."""

from __future__ import annotations

from kr_metrics.metrics import METRICS, MetricSpec

INTRO = """\
# The metric library

Every built-in metric a KR or KPI can name with `metric:`. This page is generated from the code
(`krpulse definitions metrics --format md > docs/metrics.md`); a test fails when it is stale.

## Rules every metric follows

- **Window.** A KR is evaluated as of a day D over `[cycle start, min(D, cycle end)]`, or over the
  last N days with `window: rolling_<N>d`. KPIs always use a rolling window (default 90 days).
  Both ends are inclusive, and D counts as a whole day.
- **Timezone boundaries.** Days are days in the cycle's reporting timezone. Deal close dates are
  plain dates already; timestamps (`created_at`, NPS `submitted_at`) are converted from UTC to the
  reporting timezone before they are cut into days, so a response at 23:30 UTC on 30 September
  counts on 1 October in Berlin.
- **Currency.** Money is always `amount_home`, the deal's amount in the reporting currency,
  converted once by the connector with the rate valid on the close date (creation date for open
  deals). A deal whose currency has no rate is quarantined, never counted as zero.
- **Deleted records.** Deals, customers and responses deleted in the CRM (`is_deleted`) are
  excluded everywhere, including the "existing customer" test and denominators. A deal whose
  customer was deleted still counts in deal metrics (won revenue, win rate); it just has no
  customer attributes to filter on. Per-customer metrics (revenue per existing customer) count
  one set of customers above and below the line, so a deleted or never-staged customer's
  revenue is left out of the numerator exactly as the customer is left out of the denominator.
- **No data.** Ratios and averages with nothing to divide by are null — shown as "no data", never
  0. Sums and counts over nothing are a real 0.
- **Filters.** `where:` names canonical columns of the deal or of its customer (`team`, `region`,
  `segment`, `industry`, `owner_id`, `pipeline`, `deal_type`, ...): a value, a list of values, or
  `{not: value-or-list}`. On a deal, `team` is the deal's team; `customer_team` is its customer's.
  Exception, because the metric is about customers: for `revenue_per_existing_customer`, filters
  on customer attributes (`team`, `region`, `segment`, `industry`, `owner_id`) choose the
  customers — `team` is the *customer's* team — for the numerator and the denominator alike, and
  deal-only filters (`pipeline`, `stage`, `deal_type`, `currency`) narrow which of their deals
  count as revenue.
- **Sample size.** Every value comes with the number of records behind it (`sample_size`).

## Kinds: where a KR's progress starts

Every metric is one of two kinds (the `kind` column below; custom metrics derive theirs, see
below, and may say `kind:` themselves):

- **accumulating** — the cycle's value starts at 0 on the first day and grows: won revenue, won
  deals, new customers, pipeline created, responses, and revenue per existing customer (a sum
  over one fixed set of customers).
- **level** — a rate or an average that moves up and down where it stands: win rate, NPS,
  average deal size, sales cycle days, open pipeline (a balance). A KR over a rolling window is a
  level whatever its metric: the window slides, it does not restart with the cycle.

## Progress, pace and status, in plain words

Each KR has three numbers besides its value:

- **start** — where its progress bar begins: 0 for accumulating KRs, the baseline for level KRs,
  or the KR's own `start:`.
- **baseline** — the reference: what a relative target (`+20%`) and `baseline: previous_cycle`
  are computed from, and what "same point last cycle" is compared with.
- **target** — where the KR should be on the cycle's last day.

**Progress** = (value − start) ÷ (target − start). The **grade** is progress held between 0 % and
100 %. KRs whose target is below their start (fewer days to close) read the same way.

**Pace.** The **expected path** runs from the start on the cycle's first morning to the target on
its last evening (through the KR's milestones, when it has them). For a stretch (moonshot) KR it
runs to 70 % of the way, because 70 % is its success. The **value expected by today** is the
point of that path on the as-of day.

An example from the demo on 25 November 2026, day 56 of 92 of 2026-Q4: "Revenue per existing
customer +20 %" has a baseline of 16,750 EUR (2026-Q3's full value), so its target is 20,100 EUR.
The value counts revenue since 1 October, so the bar starts at 0 EUR: 12,396 EUR is 62 % of the
way, against 12,235 EUR (61 %) expected by today — "12,396 of 12,235 EUR expected by today".
(Measured from the baseline it would have read −130 % all quarter.) "Win rate DACH from 30 % to
36 %" is a level: its bar starts at the 30 % baseline, and 36.0 % is 100 % of the way.

**Forecast.** The value the KR is projected to reach on the cycle's last day (docs/forecast.md):
for accumulating KRs today's value plus the recent pace for the days left; for levels today's
value moved along its trend, where the data show a clear one. No forecast in a cycle's first ten
days.

**Status** — one rule (`kr_metrics/scoring.py`, `STATUS_RULE`), judged on the whole percentages
that are shown, so a KR shown at 100 % never "falls short":

| pace (progress against the path) | forecast (end of cycle) | status |
|---|---|---|
| on pace (at most 10 points behind) | reaches the goal, or too early to forecast | **on track** |
| on pace | falls short | **at risk** — "on pace (…), but the forecast ends at …" |
| behind or far behind | reaches the goal | **at risk** — "behind pace (…), but the forecast reaches …" |
| behind (10–25 points) | falls short by at most 25 points, or too early | **at risk** |
| behind | falls far short (more than 25 points) | **off track** |
| far behind (more than 25 points) | falls short, or too early | **off track** |

The goal is 100 % for committed (roofshot) KRs and 70 % for stretch (moonshot) KRs. The
thresholds are `scoring.at_risk_gap` and `scoring.off_track_gap` in krpulse.yaml. Every status
comes with its reason (`status_reason`), which the CLI prints under the table and the dashboard
beside the badge. Before these: a KR without a value is **no data**; a rate (win rate, NPS,
averages) on fewer than `scoring.min_sample` records is **low sample**; a KR whose data failed
validation keeps its last good value as **stale**.

**Confidence.** NPS and win rate carry a 95 % margin of error (`±`) wherever their value is
shown. When the margin spans the distance between the value and the value expected by today,
the status is kept but its reason says "the sample is too small to tell": the true rate could
be on either side of the path. The demo's "NPS UK&I" (63.6 ±21.9 against 60.7 expected) is one.

**Closed cycles.** On a cycle's last day each KR also gets its **verdict** by ambition:
*achieved* (grade 100 %, or 70 % for a moonshot), *partially achieved* (from 40 %), or *missed*.
Once a cycle has ended, the CLI, the dashboard and the review show the final grade and verdict
instead of on/off track.

## Built-in metrics
"""

CUSTOM = """
## Custom metrics

Declare them under `metrics:` in any definitions file; KRs and KPIs then use them by name.

```yaml
metrics:
  - name: enterprise_won_revenue     # simple: one aggregation over one canonical column
    type: simple
    entity: deals                    # deals | nps_responses | customers
    agg: sum                         # sum | count | average | min | max | count_distinct
    expr: amount_home
    filter: {is_won: true, segment: Enterprise}
    date: close_date                 # the date the window applies to (default per entity)
    unit: currency
  - name: expansion_share            # ratio: one metric divided by another
    type: ratio
    numerator: existing_customer_revenue
    denominator: won_revenue
  - name: new_logo_revenue           # derived: + - * / over other metrics
    type: derived
    expr: won_revenue - existing_customer_revenue
    metrics: [won_revenue, existing_customer_revenue]
```

Kinds of custom metrics: `simple` sums, counts and distinct counts accumulate; averages, minima
and maxima are levels; a `ratio` is a level (numerator and denominator grow together); a
`derived` metric accumulates when all its metrics accumulate and it only adds, subtracts or
scales them by numbers (`won_revenue - existing_customer_revenue`). Say `kind: accumulating` or
`kind: level` on the metric when you know better, e.g. a ratio over a fixed denominator.

Derived expressions are parsed into a tree of numbers, metric names and `+ - * / ( )` and
evaluated by walking it: no code runs, nothing is `eval`'d, no SQL is built from the text.
Division by zero gives "no data".
"""


def _range(spec: MetricSpec) -> str:
    low, high = spec.valid_range
    if low is None and high is None:
        return "any number"
    return f"{'−∞' if low is None else f'{low:g}'} … {'∞' if high is None else f'{high:g}'}"


def metrics_markdown() -> str:
    parts = [INTRO]
    parts.append("| metric | kind | unit | valid range | null when |\n|---|---|---|---|---|")
    for spec in METRICS.values():
        parts.append(
            f"| [`{spec.name}`](#{spec.name}) | {spec.kind} | {spec.unit} | {_range(spec)} | "
            f"{'no data (see edge cases)' if spec.nullable else 'never'} |"
        )
    for spec in METRICS.values():
        window = (
            "a balance at the end of the as-of day (ignores the window start)"
            if spec.point_in_time
            else "the KR's window (cycle to date, or rolling)"
        )
        parts.append(
            f"\n### {spec.name}\n\n"
            f"- **Formula:** {spec.formula}\n"
            f"- **Kind:** {spec.kind}.\n"
            f"- **Window:** {window}.\n"
            f"- **Edge cases:** {spec.edge_cases}\n"
            f"- **Filters on:** {', '.join(f'`{c}`' for c in sorted(spec.filter_columns))}"
        )
    parts.append(CUSTOM)
    return "\n".join(parts)
