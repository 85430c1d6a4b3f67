# Two commands do all set-up on a fresh machine: `make reproduce` and `make test`.
# Both create .venv when it is missing and install the pinned dependencies once (a stamp file records it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= teach
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
export HELPERS_QUIET ?= 1

.PHONY: setup test lint reproduce notebook clean-results

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
	HELPERS_PROFILE=smoke $(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env notebooks

# Every notebook at $(PROFILE) (default: teach) with papermill; executed copies go to results/$(PROFILE)/notebooks/.
reproduce: $(STAMP)
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb ($(PROFILE))"; mkdir -p results/$(PROFILE)/notebooks; \
		HELPERS_PROFILE=$(PROFILE) $(BIN)/papermill --cwd notebooks $$nb \
			results/$(PROFILE)/notebooks/$$(basename $$nb) -k python3 || exit 1; \
	done

clean-results:
	rm -rf results figures/*.png
