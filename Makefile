# Two entry points: `make reproduce` and `make test`. Everything runs from .venv/ built from requirements.lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/config.yaml
PROFILE ?= profiles/default
CORES  ?= all
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: reproduce test report dryrun lock clean-results

$(BIN)/snakemake: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

.venv: $(BIN)/snakemake

reproduce: $(BIN)/snakemake
	$(BIN)/snakemake --snakefile workflow/Snakefile --configfile $(CONFIG) \
	  --workflow-profile $(PROFILE) --cores $(CORES) $(ARGS)

report: $(BIN)/snakemake
	$(BIN)/snakemake --snakefile workflow/Snakefile --configfile $(CONFIG) \
	  --workflow-profile $(PROFILE) --report results/report.html $(ARGS)

dryrun: $(BIN)/snakemake
	$(BIN)/snakemake --snakefile workflow/Snakefile --configfile $(CONFIG) \
	  --workflow-profile $(PROFILE) --dry-run --quiet rules $(ARGS)

test: $(BIN)/snakemake
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

# Regenerate the lock file from pyproject.toml (needs network access to PyPI).
lock:
	$(PYTHON) -m pip install --quiet --target /tmp/jkonetstar-uv uv
	PYTHONPATH=/tmp/jkonetstar-uv /tmp/jkonetstar-uv/bin/uv pip compile pyproject.toml --extra test \
	  --python-version 3.11 -o requirements.lock
