"""Asset, check, job and group names in one place, so they are never repeated as strings."""

EXTRACT_GROUP = "extract"
METRICS_GROUP = "metrics"
PROGRESS_GROUP = "progress"

KR_VALUES = "kr_values"
KPI_VALUES = "kpi_values"
KR_PROGRESS = "kr_progress"
VALUES_CHECK = "values_pass_validation_gate"
DAILY_JOB = "daily_kr_job"
DAILY_SCHEDULE = "daily_kr_schedule"
OWNERS = ["team:sales-ops"]


def sync_asset_key(source: str, obj: str) -> list[str]:
    return ["staging", source, obj]
