# hsd — `make demo` runs the whole chain on the tiny model; `make test` runs the tests.
# Both install into .venv on first use. See README.md for every target.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HSD := $(VENV)/bin/hsd
STAMP := $(VENV)/.hsd-installed
# CPU machines take torch 2.13.0's CPU build from local disk; a GPU box may set TORCH_SPEC=skip
# (keep the torch it has) or another pin.
TORCH_SPEC ?= torch==2.13.0
export HSD_DATA_DIR ?= $(CURDIR)/data
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
CONFIG ?= jobs/configs/pipeline_4xa100.yaml
EXECUTOR ?=
PYTEST_ARGS ?=

.PHONY: install data demo test test-unit test-integration test-slurm test-faults slurm-up slurm-down \
        bench bench-train submit-baseline submit-pipeline submit-sweep status clean help

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

install: $(STAMP) ## create .venv with hsd and its dependencies

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ "$(TORCH_SPEC)" != "skip" ]; then $(PY) -m pip install -q "$(TORCH_SPEC)"; fi
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e '.[test]'
	$(HSD) model tokenizer  # gpt-oss's tokenizer, rebuilt offline from quicktok-v1 into .cache/ (sha256 checked)
	touch $@

data: $(STAMP) ## link the prepared dataset from ../shared/data into $HSD_DATA_DIR
	$(HSD) data

demo: $(STAMP) ## the whole chain on the tiny model with the local executor
	$(PY) -m hsd.commands.demo

test: $(STAMP) ## every test: unit, integration (tiny model, multi-process) and real Slurm
	bash tests/run_all.sh $(PYTEST_ARGS)

test-unit: $(STAMP) ## fast unit tests only
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

test-integration: $(STAMP) ## tiny-model and multi-process tests
	$(PY) -m pytest tests/integration -q -m "not slurm" $(PYTEST_ARGS)

test-slurm: $(STAMP) ## start the project's multi-node Slurm (tests/slurm/README.md) and run the Slurm tests
	bash tests/slurm/slurm.sh up
	HSD_SLURM_UP=1 $(PY) -m pytest tests -q -m slurm $(PYTEST_ARGS)

test-faults: $(STAMP) ## the fault-injection suite (kills, torn writes, locks, bad input)
	$(PY) -m pytest tests -q -m faults $(PYTEST_ARGS)

slurm-up: ## start the 2-node test Slurm: slurmds in network namespaces (root, Debian)
	bash tests/slurm/slurm.sh up

slurm-down: ## stop it and remove its namespaces and links
	bash tests/slurm/slurm.sh down

bench: $(STAMP) ## GPU benchmark on the full-size gpt-oss-20b architecture (random weights)
	$(PY) -m benchmarks.bench --out BENCHMARKS.json

bench-train: $(STAMP) ## GPU LoRA training benchmark: hsd vs the old settings through hsd train (one GPU)
	$(HSD) ftdata --config configs/bench_train_gpu.yaml --out bench_train_out/ftdata
	PATH=$(abspath $(VENV))/bin:$$PATH OUT=bench_train_out bash tools/bench_train.sh bench_train_out/ftdata

submit-baseline: $(STAMP) ## baseline validation job (CONFIG=, EXECUTOR=)
	$(HSD) submit baseline --config $(CONFIG) $(if $(EXECUTOR),executor.kind=$(EXECUTOR))

submit-pipeline: $(STAMP) ## baseline + ftdata -> train -> post-FT validation -> collate
	$(HSD) submit pipeline --config $(CONFIG) $(if $(EXECUTOR),executor.kind=$(EXECUTOR))

submit-sweep: $(STAMP) ## LoRA sweep as a job array, each followed by its validation, then collate
	$(HSD) submit sweep --config $(if $(filter $(CONFIG),jobs/configs/pipeline_4xa100.yaml),jobs/configs/sweep_4xa100.yaml,$(CONFIG)) $(if $(EXECUTOR),executor.kind=$(EXECUTOR))

status: $(STAMP) ## state of the newest experiment (or EXP=dir)
	$(HSD) status $(EXP)

clean: ## remove results of the demo and caches (keeps .venv)
	rm -rf results/demo .pytest_cache
