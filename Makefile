# Two commands on a fresh machine:
#   make run    set up .venv and run the default probe (30-layer plain ReLU net, xavier-fanin vs kaiming)
#   make test   set up .venv and run the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0

.PHONY: setup run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is installed at the pinned CPU build only when it is not already importable; the
# package itself asks for a range so that users keep their own CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/initlab probe --out reports/probe

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) src/*.egg-info .pytest_cache
