# One-command set-up: `make run` starts the hotline, `make test` runs the whole suite.
# Both install what is missing first (Debian packages, then a virtualenv with the package).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test install system venv lint bench bench-routing bench-estimate bench-pops bench-soak bench-faults clean prompts

run: install
	$(BIN)/ivr run

test: install
	$(BIN)/ruff check ivr tests bench
	$(BIN)/mypy ivr bench
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

install: system $(STAMP)

system:
	@bash deploy/install-system.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check ivr tests bench
	$(BIN)/mypy ivr bench

bench: install $(BENCH_STAMP)  # every section, then the faults, then the 30-minute soak (about 60 min)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/soak.py

$(BENCH_STAMP): pyproject.toml $(STAMP)  # the bench extra (matplotlib, for the PNG charts)
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench-routing: install  # routing decision latency: 1,000 agents, 50 skills, 5,000 waiting callers
	$(BIN)/python bench/routing.py

bench-faults: install  # the seven faults under traffic at bench scale, each with what was lost (about 10 min)
	$(BIN)/python bench/faults.py

bench-pops: install  # screen-pop latency: offer -> desktop WebSocket with 500 agents connected (about 30 s)
	$(BIN)/python bench/pops.py

bench-estimate: install  # wait-estimate error against real waits in a simulated queue day (about 100 s)
	$(BIN)/python bench/estimate.py

bench-soak: install  # 30 min at 70% of the newest measured capacity: RSS flat, no failed call, no key leak
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache build *.egg-info
