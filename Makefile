# Two commands do all set-up on a fresh machine: `make reproduce` and `make test`.
# Both create .venv when it is missing and install the pinned dependencies once (a stamp file records it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= teach
WORKERS ?= 1
export HELPERS_QUIET ?= 1

.PHONY: setup test lint reproduce bench clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check helpers tests benchmarks notebooks

# Unit tests, then every notebook executed at the smoke profile by nbval.
test: $(STAMP)
	$(BIN)/ruff check helpers tests benchmarks notebooks
	$(BIN)/python -m pytest -q -n 2 tests
	HELPERS_PROFILE=smoke HELPERS_STATIC_WIDGETS=1 $(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env notebooks

# Every notebook at $(PROFILE) (default: teach) through the batch runner: notebook 00 first, 05 (the paper tables)
# last; results to results/$(PROFILE)/, figures to figures/, executed notebooks to results/$(PROFILE)/runs/ and an
# HTML site to results/$(PROFILE)/site/index.html. Completed runs are skipped, so a killed run resumes.
reproduce: $(STAMP)
	$(BIN)/python -m helpers.batch run default --profile $(PROFILE) --workers $(WORKERS)
	$(BIN)/python -m helpers.batch site --profile $(PROFILE)

# Every benchmark script, then each notebook at $(PROFILE) from empty caches (wall time, peak memory):
# results/bench.json.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --profile $(PROFILE)

clean-results:
	rm -rf results figures/smoke figures/teach figures/paper
