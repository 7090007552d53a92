# Two commands do all the set-up on a fresh machine (Python 3.11, Node.js, Debian/apt):
#   make demo   install, train the default config briefly, evaluate it beside the shipped
#               checkpoint and the original model, print the table
#   make test   install (incl. test deps, npm packages, Debian's chromium), lint (ruff; eslint and
#               prettier through npm test in web/), the JS tests (node --test), every pytest test
#               (two workers: pytest-xdist)
#   make test-fast   the unit tests only (no training, no Node, no browser)
#   make docs   the API reference from the docstrings (pdoc) into build/docs/
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast lint docs setup web chromium checkpoints clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,tf]'
	touch $@

setup: $(VENV)/.installed

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web: web/node_modules/.installed

chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

test: setup web chromium lint
	cd web && npm test
	$(PY) -m pytest -q -n 2 --dist loadfile

test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow and not node and not chromium"

lint: setup
	$(VENV)/bin/ruff format --check pnpjax experiments tests docs
	$(VENV)/bin/ruff check pnpjax experiments tests docs

docs: setup
	$(PY) docs/build.py build/docs

demo: setup
	$(VENV)/bin/pnpjax train --config blazeface6-seed --workdir runs/demo --seconds 60
	$(VENV)/bin/pnpjax eval --checkpoint runs/demo --checkpoint checkpoints/blazeface6-seed --checkpoint ../shared/seed-models/blazeface6 --n 100000

clean:
	rm -rf $(VENV) web/node_modules runs
