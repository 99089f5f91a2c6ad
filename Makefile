# Two entry points for a fresh machine: `make demo` and `make test`.
# Both install the tested pins (constraints/). torch==2.13.0 from PyPI is the multi-GB CUDA build, so a
# CPU machine (no nvidia-smi on PATH) installs torch alone first from PyTorch's CPU index; a GPU machine
# takes PyPI's CUDA build with the same pins. Override: `make setup GPU=1`, `TORCH_INDEX=URL`, or
# `CONSTRAINTS=` (no pins: keep a CUDA torch you already have). Where pip is configured with a local
# wheel folder holding the CPU torch (as on the machines this project is built on), that wheel wins and
# the unreachable CPU index only costs a few retry warnings.
PYTHON ?= python3
VENV ?= .venv
GPU ?= $(if $(shell command -v nvidia-smi 2>/dev/null),1,)
CONSTRAINTS ?= $(if $(GPU),constraints/gpu.txt,constraints/cpu.txt)
TORCH_INDEX ?= $(if $(GPU),,https://download.pytorch.org/whl/cpu)
PY := $(VENV)/bin/python
PIP_CONSTRAINT_FLAG := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)

.PHONY: setup demo test test-fast clean

$(VENV)/.installed: pyproject.toml $(wildcard constraints/*.txt)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install -q --no-deps $(PIP_CONSTRAINT_FLAG) torch --extra-index-url $(TORCH_INDEX))
	$(PY) -m pip install -q $(PIP_CONSTRAINT_FLAG) -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# Adapt the demo base model to the demo speech domain (builds corpus + base model on first run).
demo: setup
	$(PY) jobs/adapt.py --domain speech

# The full suite, slow end-to-end tests included (CI runs exactly this).
test: setup
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m pytest -m "not slow" tests

clean:
	rm -rf $(VENV) outputs demo_data
