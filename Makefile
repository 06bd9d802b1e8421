# swarmdeploy — one entry point for people and CI.
#   make demo   start a manager (and agents) on an embedded SQLite data dir and walk through it
#   make test   the whole test suite (PostgreSQL started on loopback by the tests)
#   make check  format, lint, types and import contracts
#   make bench  benchmarks under bench/ (numbers saved in bench/results/)
#   make screenshots  the GUI's browser tests, saving a picture of each view in docs/screenshots/
#   make deb    the agent's Debian package in dist/ (deploy/deb/build.sh; docs/adr/0009)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DEB_OUT ?= dist

.PHONY: all venv demo test check fmt bench screenshots deb clean

all: check test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m swarmdeploy.demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

check: $(STAMP)
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: $(STAMP)
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: $(STAMP)
	$(PY) -m bench

screenshots: $(STAMP)
	SWARMDEPLOY_SCREENSHOTS=1 $(PY) -m pytest -q tests/gui

deb: $(STAMP)
	PIP_PYTHON=$(PY) deploy/deb/build.sh $(DEB_OUT)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
