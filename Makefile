# Two entry points (README): `make pipeline` and `make test`. Both create .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup pipeline test lint
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

pipeline: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

test: setup
	$(BIN)/pytest -q --durations=5

lint: setup
	$(BIN)/ruff check .
