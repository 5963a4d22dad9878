# grokray: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
ARGS ?=

.PHONY: run test lint ui bench install clean system-deps k8s-validate faults reproduce

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch pinned first: the CPU wheel on disk, not the multi-GB CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

# the test tools (pytest, ruff, Playwright, the manifest validators, moto) on top: make test only
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(TEST_STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m grokray run studies/critical_size.py $(ARGS)

# Debian's postgresql and chromium for the integration tests (does nothing once installed)
system-deps:
	bash tools/system_deps.sh

test: $(TEST_STAMP) system-deps
	$(PY) -m ruff check grokray tests studies bench tools
	$(PY) -m pytest -q $(ARGS)

lint: $(TEST_STAMP)
	$(PY) -m ruff check grokray tests studies bench tools

# render k8s/overlays/* with kubectl kustomize; validate them against the KubeRay CRDs (k8s/crds)
# and Kubernetes' schemas, strictly, offline (kubectl and the schemas come with the test extra)
k8s-validate: $(TEST_STAMP)
	$(PY) tools/k8s_validate.py $(ARGS)

# fault drills: every scenario FAULT_RUNS times (kill moments seeded by FAULT_SEED; results/faults.json),
# then the crash sweep: a kill at every crash point, both signals, during the resume, and on a time
# grid, each resumed and checked against the uninterrupted study (results/crash_sweep.json);
# SWEEP=0 skips the sweep, SWEEP_ARGS=--quick runs its cheap subset
FAULT_RUNS ?= 3
FAULT_SEED ?=
SWEEP ?= 1
SWEEP_ARGS ?=
faults: $(STAMP)
	FAULT_RUNS=$(FAULT_RUNS) FAULT_SEED=$(FAULT_SEED) $(PY) tools/faults.py --json results/faults.json $(ARGS)
	$(if $(filter 1,$(SWEEP)),$(PY) tools/crash_sweep.py --json results/crash_sweep.json $(SWEEP_ARGS))

# every paper's headline as a measured row: results/reproduce/REPORT.md (+ report.json, a PNG a row);
# ROWS=key,key to run some (python -m grokray.reproduce --list names them), ARGS=--quick for a smoke run
ROWS ?=
reproduce: $(STAMP)
	$(PY) -m grokray.reproduce --out results/reproduce $(if $(ROWS),--rows $(ROWS)) $(ARGS)

bench: $(STAMP)
	$(PY) -m bench.bench --json results/bench.json $(ARGS)

ui: $(STAMP)
	$(PY) -m grokray links --base http://127.0.0.1:$${PORT:-5000}
	$(VENV)/bin/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --host 127.0.0.1 --port $${PORT:-5000}

clean:
	rm -rf $(VENV) results mlflow.db mlruns .pytest_cache
