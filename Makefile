# Cascade: every target creates .venv when it is missing, so each works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FUZZ_MINUTES ?= 10

.PHONY: run test e2e bench bench-check fuzz lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(PY) -m cascade_vm run examples/countdown_agent.py -p steps=5

test: $(VENV)/.installed-dev
	$(PY) -m pytest

# the HTML report in headless Chromium (Debian's chromium); screenshots in build/
e2e: $(VENV)/.installed-dev
	$(PY) -m pytest -m e2e tests/e2e

bench: $(VENV)/.installed
	$(PY) -m bench

bench-check: $(VENV)/.installed
	$(PY) -m bench --check

fuzz: $(VENV)/.installed-dev
	FUZZ_MINUTES=$(FUZZ_MINUTES) $(PY) -m tests.differential.long

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check cascade_graph cascade_vm bench tests examples
	$(PY) -m mypy --strict examples/typed_flow.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache
