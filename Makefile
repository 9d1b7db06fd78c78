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

.PHONY: demo test install browser clean fuzz load gpu

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	@# the compiled time loops (csrc/native.cpp, about 10 s); without them biornn runs the same BPTT as Python loops
	$(VENV)/bin/biornn native build || echo "make: the compiled loops were not built (see above); biornn runs its Python loops" >&2
	touch $(STAMP)

# The main job on its default data: train the names task (surname -> language)
# with the defaults, print the test metrics beside the n-gram baseline, write
# the plots, predict a few names, and check every cell against its references.
# evaluated once (:=), so every recipe line names the same directory
ifndef DEMO_RUN
DEMO_RUN := runs/demo-names-$(shell date +%Y%m%d-%H%M%S)
endif
DEMO_NAMES := Dostoevsky Satoshi Nguyen Schmidt "O'Brien" Rossi Kowalski Papadopoulos

demo: $(STAMP)
	@$(VENV)/bin/biornn data verify names >/dev/null 2>&1 || $(VENV)/bin/biornn data fetch names
	$(VENV)/bin/biornn train names --out $(DEMO_RUN)
	$(VENV)/bin/biornn predict $(DEMO_RUN) $(DEMO_NAMES)
	@echo "run directory: $(DEMO_RUN) (metrics.json, log.csv, curves.png, confusion.png)"
	$(VENV)/bin/biornn check

# The browser test (tests/test_web.py, marker `browser`) drives Debian's chromium
# through playwright (the `web` extra, in `dev`). `playwright install` is not used:
# it downloads its own browser build from a host CI cannot reach. A failed install
# does not stop make: the rest of the suite runs and the browser test fails saying
# what is missing. Set BIORNN_CHROMIUM to a Chromium binary to use another one.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
CHROMIUM_APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

browser:
	@if [ -n "$$BIORNN_CHROMIUM" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make browser: no chromium and no apt-get; install Chromium and set BIORNN_CHROMIUM (the browser test fails without it)" >&2; \
	else \
	  echo "make browser: installing Debian's chromium for the browser test"; \
	  { $(CHROMIUM_APT) update -qq && \
	    $(CHROMIUM_APT) install -y -qq --no-install-recommends chromium >/dev/null; } || \
	  echo "make browser: could not install chromium (the browser test will fail)" >&2; \
	fi

# pytest exits 5 when it collects no test: make fails on any non-zero exit.
test: $(STAMP) browser
	$(PY) -m pytest

# issue 10's marked runs at full size (make test runs them small): the service under
# 10,000 requests, and the property-based fuzzing at 10,000+ generated cases
load: $(STAMP)
	BIORNN_LOAD_REQUESTS=10000 $(PY) -m pytest -q -m load tests/test_serve_load.py

fuzz: $(STAMP)
	BIORNN_FUZZ_EXAMPLES=500 BIORNN_FUZZ_COUNT=fuzz-count.json $(PY) -m pytest -q -m fuzz tests/test_fuzz.py

# device=cuda and NCCL (tests/test_gpu.py): skipped without CUDA; -rs says why when they skip
gpu: $(STAMP)
	$(PY) -m pytest -q -rs -m gpu tests/test_gpu.py

clean:
	rm -rf $(VENV) .pytest_cache build dist
