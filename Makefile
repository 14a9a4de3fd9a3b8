# drctl: `make demo` runs the sample world on the embedded store; `make test` sets up and passes the tests.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: venv demo test lint bench system-deps postgres drill clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

postgres:
	@bash scripts/ensure-postgres.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# tests without real servers' clocks run on TEST_WORKERS processes; the end-to-end tests, whose
# timings (detection within 2 s, hand-over within two intervals) a busy CPU would skew, one at a time
TEST_WORKERS ?= 2

test: venv system-deps postgres lint
	$(PY) -m pytest -m "not e2e" -n $(TEST_WORKERS) --dist loadgroup
	$(PY) -m pytest -m e2e

demo: venv
	$(VENV)/bin/drctl demo

drill: venv
	$(VENV)/bin/drctl drill run icheon-flood-at-peak

bench: venv system-deps postgres
	$(PY) -m bench.breaker
	$(PY) -m bench.intake
	$(PY) -m bench.bia
	$(PY) -m bench.monitor
	$(PY) -m bench.failover
	$(PY) -m bench.notices

clean:
	rm -rf $(VENV) .drctl .pytest_cache .ruff_cache
