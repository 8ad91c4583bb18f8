# The two commands: `make run` and `make test`. Everything else is a helper of theirs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
DATA   ?= ./.spine-data
PROMTOOL := $(VENV)/prometheus/usr/bin/promtool

.PHONY: install run test lint typecheck unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the project's metadata changed; safe to rerun.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# promtool checks and unit-tests deploy/prometheus. It comes from Debian's package, unpacked
# rather than installed: the package's maintainer scripts would start a Prometheus server.
# A stale package list makes the download fail, hence one retry after an update.
$(PROMTOOL):
	mkdir -p $(VENV)/cache
	rm -f $(VENV)/cache/prometheus_*.deb
	cd $(VENV)/cache && { apt-get download prometheus || { apt-get update && apt-get download prometheus; }; }
	dpkg-deb -x $(VENV)/cache/prometheus_*.deb $(VENV)/prometheus
	touch $@

run: install
	SPINE_DATA_DIR=$(DATA) $(BIN)/spine serve --host $(HOST) --port $(PORT) --data-dir $(DATA) --print-token demo

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install
	$(BIN)/mypy

unit: install $(PROMTOOL)
	$(BIN)/pytest -q -n 2

test: lint typecheck unit

clean:
	rm -rf $(VENV) .spine-data .pytest_cache .mypy_cache .ruff_cache
