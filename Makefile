# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export UV_COMPILE_BYTECODE := 1
export DAGSTER_HOME := $(CURDIR)/.dagster

.PHONY: install demo test dev lint format check-defs clean

$(UV):
	@echo "uv not found: bootstrapping it with pip"
	python3 -m pip install --user --quiet uv || python3 -m pip install --user --quiet --break-system-packages uv

# The environment is rebuilt only when the lock file changes. --compile-bytecode matters: this
# machine sets PYTHONDONTWRITEBYTECODE=1, so without it every process recompiles the packages.
.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

install: .venv/.synced

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@ln -sf $(CURDIR)/dagster.yaml $@

demo: install
	$(UV) run --frozen krpulse demo

test: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen pytest -n 2 --dist loadfile

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(UV) run --frozen dagster dev

check-defs: install $(DAGSTER_HOME)/dagster.yaml
	$(UV) run --frozen dagster definitions validate

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

clean:
	rm -rf .krpulse .dagster .pytest_cache
