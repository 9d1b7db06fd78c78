# biornn: `make demo` and `make test` each set up .venv on first use.
# torch is pinned and installed first: an unpinned torch pulls several GB of CUDA packages.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.biornn-installed
TORCH  := torch==2.13.0
# extra pip arguments for torch alone, e.g. --index-url of a CPU wheel index
TORCH_PIP_ARGS ?=

# The reference data mirror beside the checkout, when there is one.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/SHA256SUMS),)
export BIORNN_DATA ?= $(SHARED_DATA)
endif

.PHONY: demo test install clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/biornn env
	$(VENV)/bin/biornn check

# pytest exits 5 when it collects no test: make fails on any non-zero exit.
test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache build dist
