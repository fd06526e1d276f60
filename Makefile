# Two set-up commands: `make demo` and `make test`. Both build .venv from scratch when needed,
# from the lock: every package at the version (and file hash) that CI tested.
# `make lock` refreshes the lock from pyproject.toml's ranges and runs the suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
LOCK   := requirements/cpu.lock
# The lock pins torch 2.13.0+cpu, the CPU build: on this project's machines its wheel lies on local disk (pip's
# find-links); elsewhere give pip PyTorch's CPU index: PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make test.
# Never add torchvision next to the CPU torch (see README, "Set-up").
TORCH_PIN ?= torch==2.13.0
STAMP  := $(VENV)/.installed

export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
export DS_ACCELERATOR ?= cpu

.PHONY: install lock test lint demo demo-long clean

# pip first, at its locked version (its line and --hash lines cut out of the lock); then the whole lock,
# hash-checked (pip refuses any package the lock leaves out); then wise_rl itself, editable, adding nothing.
$(STAMP): pyproject.toml Makefile $(LOCK)
	@$(PYTHON) -c "import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 'make: the lock ($(LOCK)) is for Python 3.11; this is ' + sys.version.split()[0] + ': PYTHON=python3.11 make ...')"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	awk '/^pip==/{p=1} p{print} p && !/\\$$/{p=0}' $(LOCK) | $(PIP) install -q --require-hashes -r /dev/stdin
	$(PIP) install -q --require-hashes -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PIP) check
	@$(PY) -c "import importlib.util as u, sys; sys.exit('torchvision must not be installed next to the CPU torch' if u.find_spec('torchvision') else 0)"
	@echo "installed from $(LOCK): pip freeze sha256 $$($(PIP) freeze --exclude-editable | sha256sum | cut -c1-16) (equal on every machine that installed the same lock)"
	touch $(STAMP)

install: $(STAMP)

# Re-resolve the lock from pyproject.toml's ranges (newest versions inside them, torch held at TORCH_PIN),
# with pip's own resolver and this machine's pip config, then install it and run the suite.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(VENV)/bin/pip-compile || $(PIP) install -q "pip-tools>=7.5"
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --upgrade --generate-hashes \
	    --allow-unsafe --strip-extras --extra dev --no-emit-index-url --no-emit-find-links \
	    --upgrade-package "$(TORCH_PIN)" --output-file $(LOCK) pyproject.toml
	$(MAKE) test

test: $(STAMP)
	$(VENV)/bin/ruff check wise_rl rewards recipes tests
	$(VENV)/bin/pytest -q -p no:cacheprovider tests

lint: $(STAMP)
	$(VENV)/bin/ruff check wise_rl rewards recipes tests

demo: $(STAMP)
	$(VENV)/bin/wise-rl demo --out runs/demo

demo-long: $(STAMP)
	$(VENV)/bin/wise-rl demo --out runs/demo-long --long

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
