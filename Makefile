# Two commands a fresh machine needs: `make run` and `make test`.
#
# What they install is exactly uv.lock (every package, transitively, with hashes):
# `uv sync --locked` refuses a lock that no longer matches pyproject.toml, and removes
# whatever the lock does not name. uv itself comes from PyPI, pinned below, into a
# tool folder of its own (.tools/), so that it is not one of the project's packages.
# `make lock` refreshes uv.lock on purpose; `make test-latest` tries the newest
# releases pyproject.toml's ranges allow in a throw-away venv.
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
UV := $(TOOLS)/bin/uv
STAMP := $(VENV)/.installed
LATEST := $(or $(TMPDIR),/tmp)/tidings-latest-venv

# uv uses this machine's Python (never downloads one) and the project's .venv.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test lint typecheck fuzz unit docs lock test-latest bench-ingest bench-deliver bench-files bench-dashboard screenshots clean

$(UV):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# A changed uv.lock (a pull, a `make lock`) or pyproject.toml re-installs.
$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --all-extras --python $(PYTHON) --quiet
	touch $(STAMP)

run: $(STAMP)
	TIDINGS_ALLOW_LOOPBACK_TARGETS=$${TIDINGS_ALLOW_LOOPBACK_TARGETS:-1} $(BIN)/tidings serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples tools
	$(BIN)/ruff format --check src tests bench examples tools

typecheck: $(STAMP)
	$(BIN)/mypy

# Tests run in TEST_JOBS processes (pytest-xdist; a file's tests stay in one process):
# many end-to-end tests mostly wait on real servers and clocks. TEST_JOBS=0: one process.
TEST_JOBS ?= 2
test: lint typecheck
	$(BIN)/pytest -n $(TEST_JOBS) --dist loadfile

# The schemathesis run of the API (part of `make test` at 50 examples per operation),
# longer: `make fuzz FUZZ_EXAMPLES=2000`; a failure prints its seed (TIDINGS_FUZZ_SEED).
FUZZ_EXAMPLES ?= 500
fuzz: $(STAMP)
	TIDINGS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/fuzz -q

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

# The generated parts of docs/ (today the settings table, from src/tidings/config.py);
# tests/docs fails while a committed page differs from what this writes.
docs: $(STAMP)
	$(BIN)/python tools/gen_docs.py

# The blocking SDK client, generated from the async one (tests/sdk fails while stale).
sdk: $(STAMP)
	$(BIN)/python tools/gen_sync_client.py

# Refresh uv.lock to the newest releases the ranges allow (then run `make test`).
lock: | $(UV)
	$(UV) lock --upgrade --python $(PYTHON)

# The newest releases pyproject.toml allows, ignoring uv.lock: lint, types, unit tests.
test-latest: | $(UV)
	rm -rf $(LATEST)
	$(UV) venv --quiet --python $(PYTHON) $(LATEST)
	VIRTUAL_ENV=$(LATEST) $(UV) pip install --quiet --upgrade --resolution highest -e ".[dev]"
	VIRTUAL_ENV=$(LATEST) $(UV) pip list | grep -E -i '^(aiohttp|redis|mypy|ruff|msgspec|asyncpg) ' || true
	$(LATEST)/bin/ruff check src tests bench examples tools
	$(LATEST)/bin/mypy
	$(LATEST)/bin/pytest tests/unit -q -p no:cacheprovider

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-deliver: $(STAMP)
	$(BIN)/python bench/deliver.py

bench-files: $(STAMP)
	$(BIN)/python bench/files.py

bench-dashboard: $(STAMP)
	$(BIN)/python bench/dashboard.py

# The dashboard's pictures in docs/img/ (a Tidings and a receiver of its own, headless
# Chromium: Debian's `chromium` package, no browser download).
screenshots: $(STAMP)
	$(BIN)/python tools/screenshots.py --out docs/img

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
