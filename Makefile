# Two commands on a fresh machine: `make demo` runs the default workflow, `make test` the tests.
# Each sets up .venv/ with the pinned dependencies first (once; again when requirements change).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed

.PHONY: demo test lint dryrun clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and alone: the exact pin, so no other package pulls a different build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	@echo "Results: results/synthetic/tables/summary.md and results/synthetic/figures/"

test: $(STAMP)
	$(BIN)/python -m pytest workflow_tests

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakemake -n --quiet

clean:
	rm -rf results logs .snakemake
