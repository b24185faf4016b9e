# The two commands of the README: `make report` (main job on the bundled digits) and `make test`.
# Both install what they need into .venv first. Override TORCH_SPEC where torch 2.13.0 is not
# available (e.g. TORCH_SPEC='torch>=2.2,<3').

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
REPORT_PARAMS ?= examples/workbook.yaml

export OMP_WAIT_POLICY ?= passive

.PHONY: install test lint report bench clean

install: $(STAMP)

# What `make report` needs (the package and the notebook tools); `make test` adds the test tools.
$(RUNTIME_STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '$(TORCH_SPEC)'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[notebooks]'
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest tests
	$(BIN)/lint-imports
	$(BIN)/ruff check aanntwin tests benchmarks

lint: install
	$(BIN)/ruff check aanntwin tests benchmarks
	$(BIN)/ruff format --check aanntwin tests benchmarks

report: $(RUNTIME_STAMP)
	$(BIN)/aanntwin workbook --params $(REPORT_PARAMS) --out reports

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/studies.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache
