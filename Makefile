# chargelift — `make dev` runs the native stack, `make test` runs the suite.
# Everything a target needs is installed by the target itself.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PACKAGES := services/contract services/runtime services/edge services/certs services/simulator services/poller \
            services/ingest services/api services/ocpp services/bridge tools/devstack
CERTS_DIR ?= certs
DEV_CHARGERS ?= 3
DEV_SPEED ?= 10
DEV_OCPP ?= 1
DEV_MODBUS ?= 0
PYTEST_ARGS ?=

.PHONY: help
help: ## Show the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# uv comes from the hash-pinned requirements-bootstrap.lock, like everything else in .venv.
$(STAMP): requirements-bootstrap.lock requirements.lock $(addsuffix /pyproject.toml,$(PACKAGES))
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements-bootstrap.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --require-hashes -r requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps --config-settings editable_mode=compat $(addprefix -e ,$(PACKAGES))
	@touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv with every package and tool (from requirements.lock)

# The Debian packages a target needs (scripts/system-deps.sh): installed with apt-get
# when missing and running as root, else the target prints the `sudo apt-get install` line.
.PHONY: dev-deps test-deps server-deps system-deps
dev-deps: ## make dev's packages: mosquitto, PostgreSQL >= 15, mosquitto-clients, curl
	@scripts/system-deps.sh dev
test-deps: ## make test's packages: mosquitto, PostgreSQL >= 15, prometheus (promtool), chromium, jq
	@scripts/system-deps.sh test
server-deps:
	@scripts/system-deps.sh servers
system-deps: dev-deps test-deps ## Both of the above

.PHONY: lock
lock: ## Re-resolve requirements.lock after changing a pyproject.toml
	@test -x $(VENV)/bin/uv || { python3 -m venv $(VENV) && \
	  $(VENV)/bin/pip install -q --require-hashes -r requirements-bootstrap.lock; }
	scripts/lock.sh

.PHONY: certs
certs: venv ## Create a complete development certificate set in ./certs
	$(VENV)/bin/chargelift-certs --dir $(CERTS_DIR) dev-set

.PHONY: fmt
fmt: venv ## Format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: check
check: venv ## Lint, format check, type check and the architecture contracts (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

.PHONY: test
test: venv test-deps ## Run the whole suite against real Mosquitto and PostgreSQL
	$(VENV)/bin/pytest $(PYTEST_ARGS)

COMPOSE_VENV := .venv-compose
$(COMPOSE_VENV)/.installed: tests/compose/requirements.lock
	@test -x $(COMPOSE_VENV)/bin/python || python3 -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r tests/compose/requirements.lock
	@touch $@

.PHONY: test-compose
test-compose: venv $(COMPOSE_VENV)/.installed ## Build and run docker-compose.yml offline (stand-in images) and test it
	@scripts/docker-deps.sh
	COMPOSE_BIN=$(CURDIR)/$(COMPOSE_VENV)/bin/docker-compose $(VENV)/bin/pytest tests/compose -p no:cacheprovider -s $(PYTEST_ARGS)

.PHONY: test-fresh
test-fresh: venv ## The README's make dev / Try it / make test on fresh Debian 12 (root, user) and 13 (containers; root: starts Docker)
	@scripts/docker-deps.sh
	$(VENV)/bin/pytest tests/fresh -p no:cacheprovider -s $(PYTEST_ARGS)

.PHONY: mosquitto-compose-conf
mosquitto-compose-conf: venv ## Regenerate mosquitto/compose.conf from the template
	$(PY) -c "from chargelift_devstack.mosquitto import COMPOSE_CONFIG as c, render_compose_config as r; c.write_text(r())"

.PHONY: fuzz
fuzz: venv ## Fuzz the MHCP driver and coordinator: >= 100,000 hostile answers (HYPOTHESIS_PROFILE=fuzz)
	HYPOTHESIS_PROFILE=fuzz $(VENV)/bin/pytest tests/unit/poller/test_mhcp_fuzz.py -q \
	    -p no:cacheprovider -o timeout=3600 --hypothesis-show-statistics $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Unit tests only (no servers)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

.PHONY: dev
dev: venv dev-deps certs ## Run the native stack with simulated chargers (Ctrl-C stops it; DEV_SPEED=10 times real time; DEV_MODBUS=1 a mixed site)
	$(VENV)/bin/chargelift-devstack up --certs-dir $(CERTS_DIR) --chargers $(DEV_CHARGERS) --speed $(DEV_SPEED) --ocpp $(DEV_OCPP) \
	    $(if $(filter 1,$(DEV_MODBUS)),--modbus)

.PHONY: dev-down
dev-down: ## Stop a stack started by `make dev` in another terminal
	@$(PY) -m chargelift_devstack.main down

.PHONY: clean
clean: ## Remove the virtual environment, caches and dev state
	@# reset also removes the servers' files that root's make dev kept outside .dev/
	@test ! -x $(PY) || $(PY) -m chargelift_devstack.main reset
	rm -rf $(VENV) $(COMPOSE_VENV) .dev .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache

# --- benchmarks ---

.PHONY: bench-poller
bench-poller: venv server-deps ## Poller: 10/100/1000 simulated chargers at 1 Hz, one poller, mTLS
	$(PY) tests/bench/poller/bench_poller.py $(BENCH_ARGS)

.PHONY: bench-ocpp
bench-ocpp: venv server-deps ## OCPP gateway: 10/100/1000 simulated charge points, MeterValues every 10 s, mTLS broker
	$(PY) tests/bench/ocpp/bench_ocpp.py $(BENCH_ARGS)

.PHONY: bench-api
bench-api: venv server-deps ## API: 20 chargers x 30 days of 1 Hz data, wrk against uvicorn
	$(PY) tests/bench/api/bench_api.py $(BENCH_ARGS)

# --- chaos ---
DURATION ?= 600
CHARGERS ?= 50
SEED ?= 1
KILLS ?= 5
OUTBOX_MAX_ROWS ?= 200000

.PHONY: chaos
chaos: venv server-deps ## Whole-system chaos soak, 5 SIGKILLs of each component (DURATION=600 CHARGERS=50 SEED=1 KILLS=5)
	$(PY) -m tests.chaos.chaos --duration $(DURATION) --chargers $(CHARGERS) --seed $(SEED) \
	    --kills $(KILLS) --outbox-max-rows $(OUTBOX_MAX_ROWS)

.PHONY: bench-ingest
bench-ingest: venv server-deps ## Ingest: 300,000 readings through mTLS Mosquitto into PostgreSQL, vs the naive design
	$(PY) tests/bench/ingest/bench_ingest.py $(BENCH_ARGS)
