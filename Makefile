# Two entry points, each doing its own set-up in .venv:
#   make run    train a GON on MNIST and evaluate it against corrupted digits
#   make test   check the style (ruff) and run the test suite
PYTHON ?= python3
VENV ?= .venv
# Elsewhere, TORCH_INDEX=https://download.pytorch.org/whl/cpu fetches the small CPU build of torch.
TORCH_INDEX ?=
BIN := $(VENV)/bin
# The full MNIST beside the checkout (../shared/data) is used in place when it is there.
SHARED_DATA := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../shared/data)
export GONOMALY_DATA ?= $(if $(wildcard $(SHARED_DATA)/mnist),$(SHARED_DATA))
ARGS ?=

.PHONY: install run test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: install
	$(BIN)/gonomaly run $(ARGS)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
