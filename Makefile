# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install what they need (torch is pinned to the
# CPU build on local disk; an unpinned torch would pull a multi-GB CUDA build).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.runfleet-installed
TORCH_PIN := torch==2.13.0

.PHONY: demo test lint typecheck unit bench clean frontend

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev,gpu,train,rag,ray,dashboard,trackio,mlflow,tensorboard]"
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The dashboard's page (frontend/, TypeScript + uPlot) type-checked and bundled by esbuild
# into src/runfleet/dashboard/static (generated, git-ignored). The browser tests need it.
STATIC := src/runfleet/dashboard/static/index.html
NODE_MODULES := frontend/node_modules/.package-lock.json
FRONTEND_SRC := $(wildcard frontend/src/*) frontend/build.mjs frontend/tsconfig.json

$(NODE_MODULES): frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

$(STATIC): $(FRONTEND_SRC) $(NODE_MODULES)
	cd frontend && npx tsc --noEmit -p . && node build.mjs

frontend: $(STATIC)

# The hyper-parallel SFT demo on the CPU; it ends by telling how to open the dashboard.
demo: $(STAMP) $(STATIC)
	$(VENV)/bin/runfleet demo

unit: $(STAMP) $(STATIC)
	$(VENV)/bin/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(PY) benchmarks/bench_logging.py

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache \
		frontend/node_modules src/runfleet/dashboard/static test-artifacts
