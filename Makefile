# Two entry points (README): `make pipeline` and `make test`. Both create .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

PLOTS_PAGE := .dvc/plots/offline.html

.PHONY: setup pipeline test lint plots ui zoo iopaint
setup: $(VENV)/.installed $(PLOTS_PAGE)

# uv installs the same packages as pip, several times faster (benchmarks/README.md). It reads
# neither pip.conf nor PIP_* variables: a local wheel folder pip is told of (PIP_FIND_LINKS)
# is passed on, so that both take the same files. --compile-bytecode writes the .pyc files
# once (pip does so by default, uv not): else every stage's process compiles torch,
# torchvision and mlflow from source again where Python may not write them
# (PYTHONDONTWRITEBYTECODE, a read-only venv), in every process.
UV_VERSION := 0.13.9
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(if $(PIP_FIND_LINKS),UV_FIND_LINKS="$(PIP_FIND_LINKS)") $(BIN)/uv pip install --quiet \
	  --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $@

# the page template `dvc plots show/diff` fill in (.dvc/config), Vega inlined: no CDN
$(PLOTS_PAGE): $(VENV)/.installed
	$(BIN)/python -m maskopt.pipeline.offline_plots $@

# `dvc repro` with independent stages two at a time, one torch thread each
# (src/maskopt/pipeline/repro.py); benchmarks/README.md compares it with plain `dvc repro`.
# The run is saved as DVC experiment `baseline`: what experiments on this machine are
# compared with (README), since a commit's results may come from another CPU.
pipeline: setup
	$(BIN)/maskopt repro --baseline

# the sample's pretrained segmenter, src/maskopt/zoo/ (zoo/recipe.yaml; about 50 min on
# 2 CPU cores, resumable): what segmenter.weights: sample-zoo starts from
zoo: setup
	$(BIN)/python -m maskopt.pipeline.launch -m maskopt.training.zoo

# IOPaint (LaMa, ZITS, MAT, LDM, MI-GAN) in its own environment: it pins numpy, pillow
# and fastapi below maskopt's. The presets for evaluate.external_inpainters: docs/pipeline.md
IOPAINT_VENV ?= .venv-iopaint
iopaint:
	$(PYTHON) -m venv $(IOPAINT_VENV)
	$(IOPAINT_VENV)/bin/pip install --quiet iopaint

# the α charts from the α experiments there are (scripts/alpha_sweep.py --no-run)
plots: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/alpha_sweep.py --no-run > /dev/null
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc plots show

# MLflow's UI on this project's store, on 127.0.0.1 only, opened in the model-training view
ui: setup
	@echo "open http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# Two workers (pytest-xdist), whole modules each, slowest modules first (tests/conftest.py).
# On two cores the paper-scale module is the critical path either way, so two workers
# gain little there (benchmarks/README.md); more cores should gain more.
test: setup
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder -v --durations=15

lint: setup
	$(BIN)/ruff check .
