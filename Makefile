PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-313 lint typecheck check bench clean

# setup.py builds the C accelerator of the emit path (_cevent.c) into src/ (editable)
BUILD_INPUTS := pyproject.toml setup.py src/pepperpy/event/_cevent.c
# the tests of event construction and store reads again on the pure-Python versions (the C
# ones are the default where they built; tests/core/test_cevent.py compares the two)
PURE_TESTS := tests/core/test_cevent.py tests/core/test_event.py tests/core/test_deep_events.py \
  tests/core/test_emit_bounds.py tests/core/test_lone_surrogates_named.py tests/core/test_ids.py \
  tests/core/test_manager.py tests/store/test_deep_rows.py tests/store/test_bytes_payloads.py \
  tests/store/test_upcaster_forms.py tests/core/test_cevent_topics.py tests/core/test_patterns.py \
  tests/core/test_pattern_shapes.py

$(STAMP): $(BUILD_INPUTS)
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
	PEPPERPY_EVENT_PURE_PYTHON=1 $(BIN)/pytest -q -p no:cacheprovider $(PURE_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

$(VENV)/.bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[all,dev,bench]'
	touch $(VENV)/.bench

# CPython 3.13, when that Python is here: every test but the broker ones in tests/bus (the
# manager starts handler Tasks eagerly on 3.12+, a path 3.11 never takes; the store, replay,
# CLI, security and notification tests run on PostgreSQL, SQLite and loopback servers) and
# the dispatch benchmark again
# (a pyenv shim answers to python3.13 even when that version is not selected: try it)
PYTHON313 ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
  "$$p" -c '' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
VENV313 := .venv-3.13
TESTS313 := tests/core tests/processing tests/validation tests/metrics tests/store tests/replay \
  tests/cli tests/security tests/notifications $(wildcard tests/test_*.py)

$(VENV313)/.installed: $(BUILD_INPUTS)
	$(PYTHON313) -m venv $(VENV313)
	$(VENV313)/bin/pip install --quiet --upgrade pip
	$(VENV313)/bin/pip install --quiet -e '.[all,dev]'
	touch $(VENV313)/.installed

$(VENV313)/.bench: $(VENV313)/.installed
	$(VENV313)/bin/pip install --quiet -e '.[all,dev,bench]'
	touch $(VENV313)/.bench

test-313:
	@if [ -n "$(PYTHON313)" ]; then \
	  $(MAKE) --no-print-directory $(VENV313)/.installed && \
	  $(VENV313)/bin/pytest -p no:cacheprovider $(TESTS313); \
	else echo "test-313: no python3.13 here; skipped"; fi

bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks
	@if [ -n "$(PYTHON313)" ]; then \
	  $(MAKE) --no-print-directory $(VENV313)/.bench && \
	  $(VENV313)/bin/python -m benchmarks dispatch --append; \
	else echo "bench: no python3.13 here; the CPython 3.13 dispatch section is skipped"; fi

clean:
	rm -rf $(VENV) $(VENV313) .mypy_cache .ruff_cache .pytest_cache
