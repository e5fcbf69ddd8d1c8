# syntax=docker/dockerfile:1
# The krpulse image: one image for the Dagster code server (the Helm user-code deployment), the
# run pods it launches, and the `krpulse` CLI (migrations: `krpulse db upgrade`). The webserver
# and the daemon run the chart's own images. krpulse.yaml, definitions/ and the secrets are NOT in
# the image: the Helm values mount them (deploy/helm/values.yaml, docs/deploy.md).
#
#   docker build -t krpulse:$(git rev-parse --short HEAD) .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the locked dependencies, then the project, into /opt/krpulse/.venv -----------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
# Compiled bytecode in the image: without it every process (each run, each step) recompiles
# great_expectations and Dagster on import, minutes on a small pod. Copy, not hard links, because
# the cache mount is gone after the build. The image's Python, never a downloaded one.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/krpulse/.venv
WORKDIR /src
# Dependencies first (their layer is reused until uv.lock changes), exactly as locked.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --extra k8s --no-install-project
COPY pyproject.toml uv.lock README.md ./
COPY core ./core
COPY connectors ./connectors
COPY kr_metrics ./kr_metrics
COPY validation ./validation
COPY okr_store ./okr_store
COPY pipelines ./pipelines
COPY dashboard ./dashboard
# The project as a wheel (not editable): the runtime image needs only the virtualenv.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra k8s --no-editable

# --- runtime: the virtualenv, the instance file, a user without privileges ---------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 krpulse \
 && useradd --system --uid 10001 --gid krpulse --home-dir /opt/dagster --create-home krpulse \
 && mkdir -p /opt/dagster/dagster_home /etc/krpulse \
 && chown -R krpulse:krpulse /opt/dagster
# Owned by root and read-only for the service user: code and bytecode cannot be changed at run time.
COPY --from=build /opt/krpulse/.venv /opt/krpulse/.venv
# Used outside Helm (docker run, compose); the chart writes its own instance file into DAGSTER_HOME.
COPY --chown=krpulse:krpulse dagster.postgres.yaml /opt/dagster/dagster_home/dagster.yaml
ENV PATH=/opt/krpulse/.venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    KRPULSE_CONFIG=/etc/krpulse/krpulse.yaml \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /opt/dagster
EXPOSE 3030
CMD ["dagster", "api", "grpc", "--module-name", "pipelines.definitions", "--host", "0.0.0.0", "--port", "3030"]
