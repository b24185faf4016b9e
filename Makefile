# The two commands of the README: `make report` (main job on the bundled digits) and `make test`.
# Both install what they need into .venv first; `make lab` opens the notebooks in JupyterLab. Override TORCH_SPEC where torch 2.13.0 is not
# available (e.g. TORCH_SPEC='torch>=2.2,<3').

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
REPORT_PARAMS ?= examples/workbook.yaml

export OMP_WAIT_POLICY ?= passive

# The git filter that strips notebooks on their way into git (`git add`, `git status`, `git diff`),
# so outputs JupyterLab autosaves into notebooks/*.ipynb never show up as changes. Besides outputs,
# execution counts and nbstripout's default keys it drops papermill's metadata, the parameters cell
# papermill injects, and the kernel details JupyterLab adds to language_info (the committed
# notebooks keep only its name).
STRIP_KEYS := metadata.papermill cell.metadata.papermill $(addprefix metadata.language_info.,\
	codemirror_mode file_extension mimetype nbconvert_exporter pygments_lexer version)
NBSTRIPOUT := '$(abspath $(BIN))/nbstripout' --drop-tagged-cells injected-parameters \
	--extra-keys '$(STRIP_KEYS)'
# `make lab` works on copies of the notebooks in LAB_DIR (git-ignored): JupyterLab autosaves outputs
# into the notebook it has open, and even with the filter git status lists a tracked notebook whose
# size changed as modified. LAB_DIR=notebooks edits the tracked ones (the filter keeps commits
# clean). As root JupyterLab needs --allow-root; on Linux without a display it prints the address
# instead of starting a text-mode browser. Add your own flags with LAB_ARGS='--port=8890'.
LAB_DIR ?= lab
LAB_ARGS ?=
LAB_FLAGS = --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) \
	$(if $(filter Linux,$(shell uname -s)),$(if $(DISPLAY)$(WAYLAND_DISPLAY),,--no-browser))

.PHONY: install git-filter test lint report bench lab strip clean

install: $(STAMP) git-filter

# What `make report` needs (the package and the notebook tools); `make test` adds the test tools.
$(RUNTIME_STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '$(TORCH_SPEC)'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[notebooks]'
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,lab]'
	touch $(STAMP)

# Idempotent; only in the checkout's own git work tree (a tarball, or a copy inside another
# repository, is left alone). .gitattributes names the notebooks the filter applies to.
git-filter: $(STAMP)
	@if [ "$$(git rev-parse --show-toplevel 2>/dev/null)" = "$$(pwd -P)" ]; then \
		git config filter.nbstripout.clean "$(NBSTRIPOUT)" && \
		git config filter.nbstripout.smudge cat && \
		git config diff.ipynb.textconv "$(NBSTRIPOUT) -t" && \
		echo "git filter nbstripout installed: notebooks/*.ipynb are committed without outputs"; \
	else echo "not a git work tree: no nbstripout filter installed"; fi

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
	$(BIN)/python benchmarks/studies.py --all

# JupyterLab on LAB_DIR at http://127.0.0.1:8888 (the next free port if taken); Ctrl-C stops it.
# A working copy is made only where none exists, so your edits and outputs there are kept.
lab: install
	@mkdir -p '$(LAB_DIR)'
	@for nb in notebooks/[0-9][0-9]_*.ipynb; do copy='$(LAB_DIR)'/$${nb##*/}; \
		if [ ! -e "$$copy" ]; then cp "$$nb" "$$copy"; \
		elif [ "$$nb" -nt "$$copy" ]; then echo "note: $$nb changed since $$copy was copied;\
	 delete the copy to get the new version"; fi; done
	$(BIN)/jupyter lab '$(LAB_DIR)' $(LAB_FLAGS) $(LAB_ARGS)

# Strips the working notebooks in place (outputs are lost), as the git filter does on commit.
strip: $(STAMP)
	$(NBSTRIPOUT) notebooks/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache
