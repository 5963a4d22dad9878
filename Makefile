# grokray: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test lint ui bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch pinned first: the CPU wheel on disk, not the multi-GB CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m grokray run studies/critical_size.py $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check grokray tests studies
	$(PY) -m pytest -q $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check grokray tests studies

bench: $(STAMP)
	$(PY) -m bench.bench --json results/bench.json $(ARGS)

ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --host 127.0.0.1 --port $${PORT:-5000}

clean:
	rm -rf $(VENV) results mlflow.db mlruns .pytest_cache
