# Quick start: `make demo` (set up + run the demo on the embedded model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.tether-installed
BIN := $(VENV)/bin

.PHONY: setup demo demo-quick test test-slow lint clean
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_env.sh
	PYTHON=$(PYTHON) bash scripts/setup_env.sh $(VENV)
	@touch $(STAMP)

demo: setup
	$(BIN)/tether demo

demo-quick: setup
	$(BIN)/tether demo --quick

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) runs
