# StreamIndex. `make test` and `make reproduce` work on a fresh machine: they build .venv
# (CPU torch) first. On a GPU machine with torch already installed, pass PY=python3.
VENV    ?= .venv
PY      ?= $(VENV)/bin/python
TORCH   ?= torch==2.13.0
HW      ?= auto
LAUNCHER ?= basic

ifeq ($(PY),$(VENV)/bin/python)
DEPS := $(VENV)/.installed
else
DEPS :=
endif

.PHONY: setup test test-gpu reproduce figures bench clean

setup: $(DEPS)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "$(TORCH)"
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

## CPU tests (Triton kernels under the interpreter).
test: $(DEPS)
	TRITON_INTERPRET=1 $(PY) -m pytest -q $(PYTEST_ARGS)

## GPU tests, on a CUDA machine: make test-gpu PY=python3
test-gpu: $(DEPS)
	$(PY) -m pytest -q -m gpu $(PYTEST_ARGS)

## The three paper experiments and the report (CUDA), or the cpu_smoke profile + report from stored
## results; LAUNCHER=submitit_local|submitit_slurm|ray spreads the cells (see conf/launcher/).
reproduce: $(DEPS)
	$(PY) -m experiments.reproduce hardware=$(HW) launcher=$(LAUNCHER)

## Regenerate figures and report from results/ only.
figures: $(DEPS)
	$(PY) -m experiments.report

## Side-by-side speed of every path at 32K / 256K / 1M (CUDA).
bench: $(DEPS)
	$(PY) -m experiments.reproduce hardware=$(HW) launcher=$(LAUNCHER) experiments=[bench]

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache build dist
