# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   := data
export PDN_OPS_DATA_DIR ?= $(CURDIR)/$(DATA)

# The locked sets (exact versions with hashes); `make lock` refreshes them within pyproject.toml's ranges.
RUN_LOCK  := requirements/run.txt
TEST_LOCK := requirements/test.txt
LOCK_ARGS := --generate-hashes --universal --python-version 3.11 --no-emit-package pdn-ops --quiet

# The future-clock run: libfaketime moves this process's wall clock (not its monotonic clock) ahead.
FAKETIME_LIB   ?= $(firstword $(wildcard /usr/lib/*/faketime/libfaketime.so.1))
FUTURE_OFFSET  ?= +400d
SLEEPFIX       := $(VENV)/sleepfix.so

.PHONY: run test lint typecheck contracts pytest pytest-future lock clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "pdn-ops needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: $(RUN_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(RUN_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: $(TEST_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(TEST_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed-run

## run: migrate the default SQLite database and serve the demo at http://127.0.0.1:8000
run: $(VENV)/.installed-run
	$(BIN)/pdn-ops demo

## test: ruff, mypy, the import contracts, the whole pytest suite, and the suite again with the clock a year ahead
## (PDN_OPS_STRICT_TESTS=1 turns missing components into failures). The two suites run one after the other: side by
## side they took 30 instead of about 40 minutes, but the future-clock fault matrix then starved for CPU (its
## scrapes and alerts follow real time) and failed in one of two runs.
test: $(VENV)/.installed-test lint typecheck contracts pytest pytest-future

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy pdn_ops collectors remediation tests bench

contracts: $(VENV)/.installed-test
	$(BIN)/lint-imports --no-cache

pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest -W error --basetemp="$$(mktemp -d)/pytest" $(PYTEST_ARGS)

$(SLEEPFIX): tests/future_clock/sleepfix.c
	cc -shared -fPIC -O2 -o $@ $< -ldl

## pytest-future: every test once more, with the process clock moved FUTURE_OFFSET ahead (Debian faketime)
pytest-future: $(VENV)/.installed-test
	@if [ -z "$(FAKETIME_LIB)" ]; then \
	  if [ "$$PDN_OPS_STRICT_TESTS" = 1 ]; then echo "libfaketime is missing (Debian package faketime)"; exit 1; fi; \
	  echo "skipped: libfaketime is missing (Debian package faketime)"; exit 0; fi
	$(MAKE) --no-print-directory $(SLEEPFIX)
	PDN_OPS_FUTURE_CLOCK=$(FUTURE_OFFSET) FAKETIME=$(FUTURE_OFFSET) FAKETIME_DONT_FAKE_MONOTONIC=1 \
	  LD_PRELOAD="$(CURDIR)/$(SLEEPFIX) $(FAKETIME_LIB)" $(BIN)/python -m pytest -W error -p no:cacheprovider --basetemp="$$(mktemp -d)/pytest" $(PYTEST_ARGS)

## lock: refresh requirements/*.txt to the newest versions pyproject.toml allows (then run make test)
lock: $(VENV)/.installed-test
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra lab $(LOCK_ARGS) --upgrade -o $(RUN_LOCK)
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra test $(LOCK_ARGS) --upgrade -o $(TEST_LOCK)

clean:
	rm -rf $(VENV) $(DATA) .mypy_cache .ruff_cache .pytest_cache
