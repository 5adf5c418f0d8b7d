# Two entry points (README): `make pipeline` and `make test`. Both create .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

PLOTS_PAGE := .dvc/plots/offline.html

.PHONY: setup pipeline test lint plots
setup: $(VENV)/.installed $(PLOTS_PAGE)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# the page template `dvc plots show/diff` fill in (.dvc/config), Vega inlined: no CDN
$(PLOTS_PAGE): $(VENV)/.installed
	$(BIN)/python -m maskopt.offline_plots $@

pipeline: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

plots: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc plots show

test: setup
	$(BIN)/pytest -q --durations=5

lint: setup
	$(BIN)/ruff check .
