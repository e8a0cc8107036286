# mer_nb: `make reproduce` and `make test` work on a fresh clone (they create .venv when needed).
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build by default (it lies on local disk here); a CUDA user sets e.g. TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
TORCH ?= torch==2.13.0
# demo: every artefact on a small synthetic set in minutes (the first command); quick: the CPU preset (PRESET=quick
# DATA=../shared/data/megc2019_composite: hours, see bench/cost.py); paper: the paper's configuration, for a CUDA machine
PRESET ?= demo
DATA ?=
ONLY ?=
DEVICE ?=
RECIPE ?=
OUT ?= reports/$(if $(DATA),$(notdir $(patsubst %/,%,$(DATA))),synthetic)-$(PRESET)
JOBS ?= 2
# The CPU instruction set every x86-64 machine this project supports has: fold records bit for bit the same on any of them
# (mer_nb.core.ISA_PINS; `mer-nb` and run_cv apply them themselves, set here so that the test processes start pinned).
ISA_PINS := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 DNNL_MAX_CPU_ISA=AVX2
SYNC_TMP := $(shell mktemp -u /tmp/mer_nb_sync.XXXXXX)
# Package files nbdev does not write: the Adam kernel's C source, and the link that ships nbs/experiments as mer_nb/notebooks
PKG_DATA := mer_nb/kernels mer_nb/notebooks

.PHONY: notebooks setup browser test docs reproduce bench export sync-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: settings.ini setup.py
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

export: setup
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean

# Fails when mer_nb/ is not what the notebooks export, or when a notebook is not nbdev_clean'ed.
sync-check: setup
	@rm -rf $(SYNC_TMP) && mkdir -p $(SYNC_TMP)/mer_nb && cp -r settings.ini nbs $(SYNC_TMP)/ && cp mer_nb/__init__.py $(SYNC_TMP)/mer_nb/ && cp -a $(PKG_DATA) $(SYNC_TMP)/mer_nb/
	@cd $(SYNC_TMP) && $(abspath $(BIN))/nbdev_export && $(abspath $(BIN))/nbdev_clean
	@diff -r -q -x __pycache__ $(SYNC_TMP)/mer_nb mer_nb || { echo "mer_nb/ is out of sync with nbs/: run 'make export' and commit notebooks and modules together"; exit 1; }
	@diff -r -q -x .ipynb_checkpoints $(SYNC_TMP)/nbs nbs || { echo "notebooks are not clean: run 'make export' (nbdev_clean) and commit"; exit 1; }
	@rm -rf $(SYNC_TMP) && echo "sync-check: mer_nb/ matches nbs/, notebooks clean"

# Chromium from Debian's packages, for the real-browser test in tests/test_docs.py: installed when missing and root.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "browser: /usr/bin/chromium is missing and installing it needs root; tests/test_docs.py will skip its browser test"; fi

test: setup browser sync-check
	$(ISA_PINS) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) -rs tests

# The documentation site, built offline from the notebooks' committed outputs (nothing is run): open _site/index.html.
DOCS_OUT ?= _site
docs: setup
	$(BIN)/python docs/build.py $(DOCS_OUT)

reproduce: setup
	OMP_NUM_THREADS=1 $(BIN)/mer-nb reproduce --preset $(PRESET) $(if $(DATA),--data $(DATA)) $(if $(ONLY),--only $(ONLY)) $(if $(DEVICE),--device $(DEVICE)) $(if $(RECIPE),--recipe $(RECIPE)) --out $(OUT)

# Speed ratios measured in one run (not tests): fast vs reference HTNet train step at the paper configuration,
# fold-parallel vs one-fold-at-a-time LOSO at the quick preset (DATA= the composite for the real set).
bench: setup
	$(BIN)/python bench/htnet_step.py
	$(BIN)/python bench/htnet_step.py --preset quick --batch 32 --steps 30 --threads 1
	$(BIN)/python bench/attention.py
	$(BIN)/python bench/fold_adam.py
	$(BIN)/python bench/precision.py --configs paper:32,quick:32 --steps 1
	OMP_NUM_THREADS=1 $(BIN)/python bench/foldpar_loso.py $(if $(DATA),--data $(DATA))

clean:
	rm -rf reports runs .pytest_cache _site

# Execute the library notebooks in place so that they are committed with their outputs and figures (docs/execute.py).
notebooks: setup
	$(ISA_PINS) OMP_NUM_THREADS=2 $(BIN)/python docs/execute.py && $(BIN)/nbdev_clean
