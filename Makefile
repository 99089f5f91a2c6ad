# Two entry points for a fresh machine: `make demo` and `make test`.
# CPU machines pin torch to the CPU wheel; GPU users: `make setup TORCH_CONSTRAINT=` (or their own file).
PYTHON ?= python3
VENV ?= .venv
TORCH_CONSTRAINT ?= constraints/cpu.txt
PY := $(VENV)/bin/python
PIP_CONSTRAINT_FLAG := $(if $(TORCH_CONSTRAINT),-c $(TORCH_CONSTRAINT),)

.PHONY: setup demo test test-fast clean

$(VENV)/.installed: pyproject.toml $(TORCH_CONSTRAINT)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
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
