"""What the Kubernetes deployment relies on, checked without Kubernetes: definitions mounted from a
ConfigMap volume, the Helm values and the Dockerfile (tests/test_deployment.py runs the processes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO
from ruamel.yaml import YAML

from kr_metrics.loader import definition_files, load_definitions
from pipelines.sensors import definitions_fingerprint

VALUES = REPO / "deploy" / "helm" / "values.yaml"
DOCKERFILE = REPO / "Dockerfile"


def configmap_volume(folder: Path, files: dict[str, bytes], version: str) -> Path:
    """A folder laid out as the kubelet lays out a ConfigMap volume: the files in a hidden,
    timestamped folder, `..data` linking to it, and one link per file at the top."""
    folder.mkdir(exist_ok=True)
    stamped = folder / f"..2026_12_06_23_00_00.{version}"
    stamped.mkdir()
    for name, content in files.items():
        (stamped / name).write_bytes(content)
    data = folder / "..data"
    old = data.resolve() if data.is_symlink() else None
    data.unlink(missing_ok=True)
    data.symlink_to(stamped.name)
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(Path("..data") / name)
    if old is not None:
        shutil.rmtree(old)
    return folder


def repo_definitions() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (REPO / "definitions").glob("*.yaml")}


def test_definitions_mounted_from_a_configmap_volume_load_each_file_once(tmp_path):
    mounted = configmap_volume(tmp_path / "definitions", repo_definitions(), "1")
    assert [p.name for p in definition_files(mounted)] == sorted(repo_definitions())
    # Before, every file was read twice (through its link and in the hidden folder) and the
    # duplicate cycles stopped every run.
    from_volume = load_definitions(mounted, timezone="Europe/Berlin")
    from_repo = load_definitions(REPO / "definitions", timezone="Europe/Berlin")
    assert sorted(from_volume.cycles) == sorted(from_repo.cycles)


def test_a_configmap_update_changes_the_fingerprint_only_when_a_file_changes(tmp_path):
    files = repo_definitions()
    mounted = configmap_volume(tmp_path / "definitions", files, "1")
    before = definitions_fingerprint(mounted)
    # The kubelet swaps the timestamped folder on every sync, even with the same content.
    configmap_volume(mounted, files, "2")
    assert definitions_fingerprint(mounted) == before
    edited = {**files, "kpis.yaml": files["kpis.yaml"] + b"\n# an edit\n"}
    configmap_volume(mounted, edited, "3")
    assert definitions_fingerprint(mounted) != before


# --- the Helm values -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def values() -> dict:
    return YAML(typ="safe").load(VALUES.read_text())


def test_the_user_code_deployment_mounts_krpulse_yaml_and_the_definitions(values):
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    mounts = {m["mountPath"]: m for m in deployment["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["volumes"]}
    env = {e["name"]: e["value"] for e in deployment["env"]}
    config = Path(env["KRPULSE_CONFIG"])
    # krpulse.yaml and the definitions come from ConfigMap volumes, never envConfigMaps (which
    # only turn keys into environment variables).
    assert "envConfigMaps" not in deployment
    assert str(config) in mounts and "configMap" in volumes[mounts[str(config)]["name"]]
    assert mounts[str(config)]["subPath"] == config.name
    definitions = config.parent / "definitions"  # krpulse.yaml says `definitions: definitions/`
    assert str(definitions) in mounts and "subPath" not in mounts[str(definitions)]
    assert "configMap" in volumes[mounts[str(definitions)]["name"]]
    # Runs get the same mounts, environment and secrets as the code server.
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert deployment["envSecrets"] == [{"name": "krpulse-secrets"}]
    assert deployment["dagsterApiGrpcArgs"][:2] == ["--module-name", "pipelines.definitions"]


def test_secrets_reach_every_pod_by_envsecrets_and_are_never_written_into_the_values(values):
    text = VALUES.read_text()
    for secret_env in ("KRPULSE_DATABASE_URL", "HUBSPOT_TOKEN", "SF_PRIVATE_KEY"):
        assert f"{secret_env}:" not in text and f"name: {secret_env}" not in text
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert launcher["envSecrets"] == [{"name": "krpulse-secrets"}]
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False


def test_the_instance_settings_match_dagster_postgres_yaml(values):
    shipped = YAML(typ="safe").load((REPO / "dagster.postgres.yaml").read_text())
    runs = values["concurrency"]["runs"]
    assert runs["maxConcurrentRuns"] == shipped["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == shipped["concurrency"]["runs"]["tag_concurrency_limits"]
    pools = values["concurrency"]["pools"]
    assert pools["defaultLimit"] == shipped["concurrency"]["pools"]["default_limit"]
    assert pools["granularity"] == shipped["concurrency"]["pools"]["granularity"]
    retries = values["dagsterDaemon"]["runRetries"]
    assert retries["maxRetries"] == shipped["run_retries"]["max_retries"]
    assert (
        retries["retryOnAssetOrOpFailure"] is shipped["run_retries"]["retry_on_asset_or_op_failure"]
    )
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True


def test_run_pods_request_the_measured_memory_of_the_day_run(values):
    container = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]
    memory = container["resources"]["limits"]["memory"]
    # docs/deploy.md, "Memory": a day's first computation peaked at 4.27 GiB with one million
    # staged deals; the run worker and the forkserver beside the step are Dagster (~0.38 GiB each).
    assert memory.endswith("Gi") and float(memory[:-2]) >= 4.27 + 2 * 0.38
    assert "4.27 GiB" in (REPO / "docs" / "deploy.md").read_text()


# --- the image -------------------------------------------------------------------------------------


def test_the_dockerfile_installs_the_locked_dependencies_compiled_and_runs_as_a_user():
    text = DOCKERFILE.read_text()
    assert "uv sync --frozen --no-dev --extra k8s" in text  # run pods load the K8sRunLauncher
    assert "UV_COMPILE_BYTECODE=1" in text
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    ignored = (REPO / ".dockerignore").read_text().split()
    for local_only in (".venv", ".krpulse", ".dagster", ".git"):
        assert local_only in ignored
