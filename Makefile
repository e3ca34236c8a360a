# One command per chore; CI runs exactly these.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# make bench: every scenario of bench/, one table, bench/results.json; QUICK=1: under a minute.
# Most tests wait on servers and subprocesses, not the CPU: four workers on two cores (the
# whole run took 649 s with four against 797 s with three, on one two-core machine).
# --dist loadgroup: a module whose fixture runs many children keeps them to one worker.
PYTEST_ARGS ?= -n 4 --dist loadgroup

.PHONY: run test lint typecheck unit bench system-deps clean

$(STAMP): pyproject.toml
	scripts/bootstrap-python $(VENV)
	touch $(STAMP)

system-deps:
	scripts/install-system-deps

run: $(STAMP)
	scripts/run-local

lint: $(STAMP)
	$(VENV)/bin/ruff check remediator tests bench
	$(VENV)/bin/ruff format --check remediator tests bench
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy remediator tests/support

unit: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The checks and the tests at once: mypy and ruff take the first minute of pytest's.
test: system-deps $(STAMP)
	$(MAKE) --no-print-directory -j3 lint typecheck unit

bench: system-deps $(STAMP)
	$(PY) bench/run.py $(if $(QUICK),--quick) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .state .mypy_cache .pytest_cache .ruff_cache
