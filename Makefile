PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pepperpy-event demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

$(VENV)/.bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[all,dev,bench]'
	touch $(VENV)/.bench

# the dispatch benchmark again on CPython 3.13 (eager tasks), when that Python is here
PYTHON313 ?= $(shell command -v python3.13 2>/dev/null)
VENV313 := .venv-3.13

$(VENV313)/.bench: pyproject.toml
	$(PYTHON313) -m venv $(VENV313)
	$(VENV313)/bin/pip install --quiet --upgrade pip
	$(VENV313)/bin/pip install --quiet -e '.[all,dev,bench]'
	touch $(VENV313)/.bench

bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks
	@if [ -n "$(PYTHON313)" ]; then \
	  $(MAKE) --no-print-directory $(VENV313)/.bench && \
	  $(VENV313)/bin/python -m benchmarks dispatch --append; \
	else echo "bench: no python3.13 here; the CPython 3.13 dispatch section is skipped"; fi

clean:
	rm -rf $(VENV) $(VENV313) .mypy_cache .ruff_cache .pytest_cache
