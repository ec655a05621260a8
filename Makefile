# Two commands for a newcomer: `make demo` and `make test`. Each sets up its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test lint venv clean bench

# The installer is uv when it can be had from the package index (it installs in parallel and
# prints each package as it lands: seconds where pip takes minutes), else pip with its progress
# bars; INSTALLER=pip forces pip. If uv fails for any reason, pip retries the same install.
# Either way the step reports its time.
# Bytecode is compiled at install, as pip does by default and uv only when asked: where
# PYTHONDONTWRITEBYTECODE is set (many container images, this project's CI machine), nothing
# writes it later, and every process compiled each module it imports again (boto3, pydantic and
# Dagster: `pipeline-sync --help` took 1.6 s instead of 0.65 s). pipeline_sync and bench are an
# editable install, so compileall writes theirs; a source edited later is recompiled in memory
# (Python checks each .pyc against its source's time and size), never run stale.
INSTALLER ?= auto
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pipeline-sync needs Python 3.11 or newer; found " + sys.version.split()[0] + ". Set PYTHON=/path/to/python3.11 and retry.")'
	@echo "Installing pipeline-sync and its dev extras into $(VENV)..."
	@start=$$(date +%s) && \
	  $(PYTHON) -m venv $(VENV) && \
	  if [ "$(INSTALLER)" != pip ] && $(BIN)/python -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
	     && echo "[installer] uv $$($(BIN)/uv --version | cut -d' ' -f2)" \
	     && $(BIN)/uv pip install --compile-bytecode --python $(BIN)/python -e '.[dev]'; then :; \
	  else \
	    echo "[installer] pip (uv unavailable or failed)" && \
	    $(BIN)/python -m pip install --progress-bar on --upgrade pip && \
	    $(BIN)/python -m pip install --progress-bar on -e '.[dev]'; \
	  fi && \
	  $(BIN)/python -m compileall -q pipeline_sync bench && \
	  echo "Installed into $(VENV) in $$(( $$(date +%s) - start )) s."
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pipeline_sync.demo

# Everything temporary (the Dagster home of `definitions validate`, pytest's tmp_path folders,
# any tempfile a test or a library makes) goes under one folder, removed however the run ends.
# tests/skip_report.py lists what was skipped, and why, after pytest's totals.
test: $(STAMP)
	$(BIN)/ruff check pipeline_sync tests bench
	$(BIN)/ruff format --check pipeline_sync tests bench
	$(BIN)/mypy
	@scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT INT TERM && \
	  echo "DAGSTER_HOME=$$scratch/dagster_home $(BIN)/dagster definitions validate -w workspace.yaml" && \
	  mkdir "$$scratch/dagster_home" && \
	  DAGSTER_HOME="$$scratch/dagster_home" $(BIN)/dagster definitions validate -w workspace.yaml && \
	  echo "TMPDIR=$$scratch $(BIN)/python -m pytest -q -p skip_report --basetemp=$$scratch/pytest" && \
	  TMPDIR="$$scratch" $(BIN)/python -m pytest -q -p skip_report --basetemp="$$scratch/pytest"

bench: $(STAMP)
	$(BIN)/python -m bench.reconcile

clean:
	rm -rf $(VENV) .dagster_home .demo
