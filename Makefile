# Two set-up commands: `make demo` and `make test`. Both build .venv from scratch when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU wheel of torch 2.13.0 lies on local disk here; on a GPU box the same pin pulls the CUDA build.
# Never add torchvision next to the CPU torch (see README, "Installing").
TORCH_PIN ?= torch==2.13.0
STAMP  := $(VENV)/.installed

export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
export DS_ACCELERATOR ?= cpu

.PHONY: install test lint demo demo-long clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -e ".[dev]" "$(TORCH_PIN)"
	@$(PY) -c "import importlib.util as u, sys; sys.exit('torchvision must not be installed next to the CPU torch' if u.find_spec('torchvision') else 0)"
	touch $(STAMP)

install: $(STAMP)

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
