# nova-ray: `make run` does the whole demo (installs on first use), `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO := data/demo
DEMO_ITEMS ?= 60
DEMO_DAYS ?= 1095

.PHONY: install run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

$(DEMO)/demand.parquet: | $(BIN)/.installed
	$(BIN)/nova-ray demo-data --out $(DEMO) --items $(DEMO_ITEMS) --days $(DEMO_DAYS)

run: install $(DEMO)/demand.parquet
	$(BIN)/nova-ray forecast --data $(DEMO)/demand.parquet --horizon 30

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check nova_ray tests benchmarks

bench: install
	$(BIN)/python benchmarks/fanout.py

clean:
	rm -rf data/demo data/ml_results .pytest_cache
