# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   := data
export PDN_OPS_DATA_DIR ?= $(CURDIR)/$(DATA)

.PHONY: run test lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "pdn-ops needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[lab]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

## run: migrate the default SQLite database and serve the demo at http://127.0.0.1:8000
run: $(VENV)/.installed-run
	$(BIN)/pdn-ops demo

## test: ruff, mypy and the whole pytest suite (PDN_OPS_STRICT_TESTS=1 turns missing components into failures)
test: $(VENV)/.installed-test lint typecheck pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy pdn_ops collectors remediation tests

pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest -W error $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DATA) .mypy_cache .ruff_cache .pytest_cache
