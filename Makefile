# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install the package into it (once; again when
# pyproject.toml changes).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -m "not slow and not gpu"

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing braindecode_suite and its dependencies into $(VENV) (a few minutes the first time)"
	@$(BIN)/pip install -e ".[dev,offline,captions,meeg]" > $(VENV)/install.log 2>&1 \
		|| (grep -v '^WARNING: Location' $(VENV)/install.log | tail -n 40; exit 1)
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/bds demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/feature_store.py
	$(BIN)/python benchmarks/demo_runtime.py
	$(BIN)/python benchmarks/ridge.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
