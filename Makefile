# Inboxdesk developer tasks. Every Python target runs from a local virtualenv
# so nothing leaks into (or depends on) the system interpreter.

PYTHON      ?= python3
VENV        ?= .venv
PYTEST_ARGS ?=
DEMO_ARGS   ?=

# Marks a completed install; depending on pyproject.toml means dependency
# changes trigger a reinstall on the next make invocation. A failed pip
# self-upgrade is tolerated: the bundled pip is good enough for the install.
STAMP  := $(VENV)/.installed
PYTEST := $(VENV)/bin/python -m pytest $(PYTEST_ARGS)
RUFF   := $(VENV)/bin/ruff

.DEFAULT_GOAL := help

.PHONY: help demo test test-sqlite test-postgres chromium bench lint format clean

help: ## Show this help
	@echo "Usage: make TARGET [PYTEST_ARGS=...] [DEMO_ARGS=...]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip -q || echo "warning: pip upgrade failed; continuing with bundled pip"
	$(VENV)/bin/pip install -e ".[dev]"
	touch $@

demo: $(STAMP) ## Run the demo (extra arguments via DEMO_ARGS=...)
	$(VENV)/bin/inboxdesk demo $(DEMO_ARGS)

# Both backends always run so one failure doesn't hide the other; the target
# still fails if either did.
test: $(STAMP) chromium ## Run the test suite on SQLite, then on a throwaway PostgreSQL
	@sqlite=ok; postgres=ok; \
	echo "==> tests on SQLite"; \
	env -u INBOXDESK_TEST_DATABASE_URL $(PYTEST) || sqlite=FAILED; \
	echo "==> tests on PostgreSQL"; \
	bash scripts/with-postgres.sh $(PYTEST) || postgres=FAILED; \
	echo "==> SQLite: $$sqlite, PostgreSQL: $$postgres"; \
	[ "$$sqlite" = ok ] && [ "$$postgres" = ok ]

# Unsetting the URL makes the suite fall back to its default SQLite database.
test-sqlite: $(STAMP) chromium ## Run the test suite on SQLite
	env -u INBOXDESK_TEST_DATABASE_URL $(PYTEST)

test-postgres: $(STAMP) chromium ## Run the test suite on a throwaway PostgreSQL
	bash scripts/with-postgres.sh $(PYTEST)

# Debian's Chromium for the add-on preview's browser test: installed when missing and we are root;
# otherwise a warning, and that one test skips.
chromium: ## Make sure /usr/bin/chromium is there (for the preview's browser test)
	@bash scripts/ensure-chromium.sh

bench: $(STAMP) ## Run the benchmarks against a throwaway PostgreSQL
	bash scripts/with-postgres.sh $(VENV)/bin/python -m benchmarks

lint: $(STAMP) ## Check linting and formatting (no changes)
	$(RUFF) check . && $(RUFF) format --check .

format: $(STAMP) ## Reformat and apply safe lint fixes
	$(RUFF) format . && $(RUFF) check --fix .

clean: ## Remove the virtualenv, local state and caches
	rm -rf $(VENV) .inboxdesk .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
