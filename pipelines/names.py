"""Asset, check, job and group names in one place, so they are never repeated as strings."""

EXTRACT_GROUP = "extract"
STAGING_GROUP = "staging"
METRICS_GROUP = "metrics"
PROGRESS_GROUP = "progress"
PUBLISH_GROUP = "publish"

KR_VALUES = "kr_values"
KPI_VALUES = "kpi_values"
KR_PROGRESS = "kr_progress"
VALUES_CHECK = "values_pass_validation_gate"
DATA_CHECK = "staged_rows_pass_validation_gate"
STAGED_SOURCES = "staged_sources"
OKR_TOOL_PUSHES = "okr_tool_pushes"
SYNC_JOB = "sync_sources_job"
DAILY_JOB = "daily_kr_job"
DAILY_SCHEDULE = "daily_kr_schedule"
AFTER_SYNC_SENSOR = "kr_days_after_sync"
AFTER_FAILED_SYNC_SENSOR = "kr_days_after_failed_sync"
DEFINITIONS_SENSOR = "definitions_changed"
RUN_FAILURE_SENSOR = "notify_on_run_failure"
MISSED_RETRY_SENSOR = "notify_on_missed_retry"
OWNERS = ["team:sales-ops"]


def sync_asset_key(source: str, obj: str) -> list[str]:
    return ["staging", source, obj]
