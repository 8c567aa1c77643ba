# The README's commands: `make setup`, `make test`, `make run`.
VENV := .venv
WORK_DIR ?= work
export TF_USE_LEGACY_KERAS := 1

.PHONY: setup test run clean

setup:
	bash tools/setup_venv.sh

test:
	$(VENV)/bin/python -m pytest

run:
	$(VENV)/bin/mtrec run --work-dir $(WORK_DIR)

clean:
	rm -rf $(WORK_DIR) .pytest_cache
