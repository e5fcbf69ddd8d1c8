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
  customer was deleted still counts; it just has no customer attributes to filter on.
- **No data.** Ratios and averages with nothing to divide by are null — shown as "no data", never
  0. Sums and counts over nothing are a real 0.
- **Filters.** `where:` names canonical columns of the deal or of its customer (`team`, `region`,
  `segment`, `industry`, `owner_id`, `pipeline`, `deal_type`, ...): a value, a list of values, or
  `{not: value-or-list}`. On a deal, `team` is the deal's team; `customer_team` is its customer's.
- **Sample size.** Every value comes with the number of records behind it (`sample_size`).

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
    parts.append("| metric | unit | valid range | null when |\n|---|---|---|---|")
    for spec in METRICS.values():
        parts.append(f"| [`{spec.name}`](#{spec.name}) | {spec.unit} | {_range(spec)} | "
                     f"{'no data (see edge cases)' if spec.nullable else 'never'} |")  # fmt: skip
    for spec in METRICS.values():
        window = ("a balance at the end of the as-of day (ignores the window start)"
                  if spec.point_in_time else "the KR's window (cycle to date, or rolling)")  # fmt: skip
        parts.append(
            f"\n### {spec.name}\n\n"
            f"- **Formula:** {spec.formula}\n"
            f"- **Window:** {window}.\n"
            f"- **Edge cases:** {spec.edge_cases}\n"
            f"- **Filters on:** {', '.join(f'`{c}`' for c in sorted(spec.filter_columns))}"
        )
    parts.append(CUSTOM)
    return "\n".join(parts)
