# The README's commands: `make setup`, `make test`, `make run`.
VENV := .venv
WORK_DIR ?= work
# Tests run on this many pytest-xdist workers; tests sharing a pipeline run share a worker
# (xdist_group marks), the rest spread out, in the order tests/conftest.py sorts them. Three on 2
# cores: Beam's DirectRunner keeps one core busy at a time, and a third worker fills the gaps
# (196% of the CPU busy; 17:48 against 18:58 with two, in the same hour).
TEST_WORKERS ?= 3
export TF_USE_LEGACY_KERAS := 1

.PHONY: setup test run clean

setup:
	bash tools/setup_venv.sh

test:
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

run:
	$(VENV)/bin/mtrec run --work-dir $(WORK_DIR)

clean:
	rm -rf $(WORK_DIR) .pytest_cache
