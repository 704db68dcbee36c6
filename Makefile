# Everyday commands. `make train` and `make test` install the environment first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch and torchvision pinned to the releases this project is tested with.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
TEST_ARGS ?=
# pytest-xdist workers for make test and make test-all (one thread each): one per core.
TEST_WORKERS ?= 2

.PHONY: help install train test test-all lint format docs tb bench bench-data quality gpu-wheels gpu-check clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the package with its dev extra (once)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: $(STAMP) ## Pre-train SimCLR on the offline digits data set (7 to 9 minutes on a 2-core CPU)
	$(BIN)/python train.py experiment=digits_quick

test: $(STAMP) ## Run the fast test suite
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadgroup $(TEST_ARGS)

test-all: $(STAMP) ## Run every test, slow ones included
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(TEST_ARGS)

lint: $(STAMP) ## Check style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

# The pages made from configs/, the registries and the docstrings come from tools/docs_pages.py
# (a hook of mkdocs.yml) at every build; --strict fails on a broken link or reference.
docs: $(DOCS_STAMP) ## Build the documentation site into site/ (mkdocs build --strict)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP) ## CPU benchmark: a pre-training step against the encoder's ceiling (< 10 min)
	$(BIN)/python bench/cpu.py

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# Scores the test split, once, for the recipe chosen; screens score the validation split
# (bench/quality.py's default). Fails when ours falls behind the peer or the raw pixels.
# Both sides train QUALITY_EPOCHS epochs, half of make train's 80, so that the six
# pre-trainings (3 seeds each, two one-thread processes at a time) fit in under 30 minutes on
# an idle 2-core machine. QUALITY_RUNS=ours,peer,ours_view_passes adds ours with one encoder
# pass per view.
QUALITY_RUNS ?= ours,peer
QUALITY_EPOCHS ?= 40
quality: $(BENCH_STAMP) ## Encoder quality against a lightly-built peer at equal budget, 3 seeds; fails when behind
	$(BIN)/python bench/quality.py --seeds 3 --split test --check --runs $(QUALITY_RUNS) \
		trainer.max_epochs=$(QUALITY_EPOCHS)

bench-data: $(BENCH_STAMP) ## Views/s per CPU core from JPEG folders: each pipeline and lightly's (< 10 min)
	$(BIN)/python bench/data.py

# The GPU check on a lent GPU node, which may have no network and brings its own Python 3.12
# with torch, torchvision, Lightning, torchmetrics and timm, not what else the check imports:
# `make gpu-wheels` (where there is a network) puts those wheels into $(WHEELS)/, at the versions
# .venv runs the tests with; `make gpu-check` (on the node) installs them from there alone.
WHEELS := .whl
# The node's Python by default; here, .venv's (which has them all: no install).
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_SITE ?= /tmp/simclr-gpu-site
WHEEL_TARGET := --only-binary=:all: --python-version 3.12 --implementation cp \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

gpu-wheels: $(STAMP) ## With a network: the wheels a GPU node lacks (Hydra, simplejpeg...) into .whl/
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	$(BIN)/python -m pip freeze | grep -iE '^(hydra-core|omegaconf|simplejpeg|pyyaml)==' > $(WHEELS)/pins.txt
	$(BIN)/python -m pip download --quiet --no-deps $(WHEEL_TARGET) -d $(WHEELS) -r $(WHEELS)/pins.txt
	# omegaconf's parser runtime (antlr4 4.9) is published as a source archive only: its wheel
	# (pure Python) is built here.
	$(BIN)/python -m pip wheel --quiet --no-deps -w $(WHEELS) \
		"$$($(BIN)/python -m pip freeze | grep -i '^antlr4-python3-runtime==')"
	@du -cb $(WHEELS)/*.whl | awk '{print} END {if ($$1 > 64 * 2^20) {print "over 64 MiB"; exit 1}}'

gpu-check: ## On a GPU node, no network needed (make gpu-wheels first): CUDA against CPU, speed (< 8 min)
	@if ! $(GPU_PYTHON) -c "import hydra, omegaconf, simplejpeg" 2>/dev/null; then \
		ls $(WHEELS)/*.whl >/dev/null 2>&1 || { echo "no wheels in $(WHEELS)/: run make gpu-wheels where there is a network"; exit 2; }; \
		echo "installing $(WHEELS)/*.whl into $(GPU_SITE)"; \
		$(GPU_PYTHON) -m pip install --quiet --no-index --no-deps --upgrade --target $(GPU_SITE) $(WHEELS)/*.whl; \
	fi
	PYTHONPATH=$(CURDIR)/src:$(GPU_SITE) $(GPU_PYTHON) bench/gpu_check.py --out gpu_check.json

tb: $(STAMP) ## TensorBoard on the logs folder
	$(BIN)/tensorboard --logdir logs

clean: ## Remove caches and the built site (keeps .venv, logs and data)
	rm -rf .pytest_cache .ruff_cache src/*.egg-info site
