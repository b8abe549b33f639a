# The two commands of the README: `make demo` (the main job, on SQLite) and `make test` (every check).
# Each sets itself up from a fresh clone: a virtual environment in .venv with the package installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types pytest services bench screenshots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/actionhooks demo

# lint + types + the whole test suite on SQLite and PostgreSQL, against real brokers. On a clone with no ../shared/
# beside it the catalogue-vs-seed tests skip with the reason (.ci/run sets ACTIONHOOKS_REQUIRE_SEED=1 to require it).
# The suite runs in two worker processes (pytest-xdist), each test file whole in one of them (a file's tests share
# module fixtures and some run in order); every worker has its own PostgreSQL database, Tansu and RabbitMQ node.
# Most long tests wait on services, so two workers halve the time even on two cores (894 s -> 507 s here).
test: $(STAMP) services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) services
	$(BIN)/pytest -q

services:
	bash scripts/services

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Every console page in English and Russian, as PNGs under docs/console/ (Debian's chromium; see scripts/services).
screenshots: $(STAMP) services
	$(BIN)/python -m actionhooks.devtools.screenshots docs/console

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
