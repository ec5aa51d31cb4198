# Two commands a new user runs: `make demo` and `make test`.
# Both build .venv from the exact pins in requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= demo-out
# pytest processes for `make test`: most tests wait on subprocesses (Prefect servers, CLI
# runs), so two keep two cores busy; whole files go to one process (--dist loadfile).
TEST_WORKERS ?= 2
# Prefect runs offline and keeps its state inside the project.
export PREFECT_HOME := $(CURDIR)/.work/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: venv demo test lint soak bench clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/hnte demo --out $(OUT)

test: $(STAMP)
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/ruff check hnte tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check hnte tests benchmarks scripts
	$(BIN)/ruff format --check hnte tests benchmarks scripts
	$(BIN)/mypy

# Long fuzz and kill-and-rerun runs, bounded by HNTE_SOAK_SECONDS (default 600).
soak: $(STAMP)
	HNTE_SOAK=1 $(BIN)/pytest -q tests/soak

bench: $(STAMP)
	$(BIN)/python benchmarks/batch_throughput.py --n 10000 --db sqlite

clean:
	rm -rf $(VENV) .work $(OUT)
