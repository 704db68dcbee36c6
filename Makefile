# Everyday commands. `make train` and `make test` install the environment first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch and torchvision pinned to the releases this project is tested with.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
TEST_ARGS ?=

.PHONY: help install train test test-all lint format tb bench bench-data quality clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the package with its dev extra (once)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: $(STAMP) ## Pre-train SimCLR on the offline digits data set (about 5.5 minutes on a 2-core CPU)
	$(BIN)/python train.py experiment=digits_quick

test: $(STAMP) ## Run the fast test suite
	$(BIN)/python -m pytest -m "not slow" $(TEST_ARGS)

test-all: $(STAMP) ## Run every test, slow ones included
	$(BIN)/python -m pytest $(TEST_ARGS)

lint: $(STAMP) ## Check style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## CPU benchmark: a pre-training step against the encoder's ceiling (< 10 min)
	$(BIN)/python bench/cpu.py

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

quality: $(BENCH_STAMP) ## Encoder quality against a lightly-built peer at equal budget, 3 seeds (about 40 min)
	$(BIN)/python bench/quality.py --seeds 3

bench-data: $(BENCH_STAMP) ## Views/s per CPU core from JPEG folders: each pipeline and lightly's (< 10 min)
	$(BIN)/python bench/data.py

tb: $(STAMP) ## TensorBoard on the logs folder
	$(BIN)/tensorboard --logdir logs

clean: ## Remove caches (keeps .venv, logs and data)
	rm -rf .pytest_cache .ruff_cache src/*.egg-info
