# neurotrain_hf: `make train` and `make test` bootstrap .venv themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
CONFIG ?= recipes/configs/digits_cnn.toml
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export HF_EVALUATE_OFFLINE ?= 1
export HF_UPDATE_DOWNLOAD_COUNTS ?= 0
export GRADIO_ANALYTICS_ENABLED ?= False
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install system-packages deepspeed-ops train train-seg train-seg3d train-det train-clip train-diffusion train-vlm tune test test-fast lint format bench bench-demos bench-metrics docs spaces clean

# Reinstalls only when pyproject.toml changes (the stamp is newer otherwise).
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch/torchvision pinned together: PyPI torchvision does not import beside other torch builds.
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

train: install
	$(BIN)/python recipes/train_classification.py $(CONFIG)

# 2D segmentation on the embedded synthetic retina (Dice inside the FOV >= 0.80 in a few minutes on CPU)
train-seg: install
	$(BIN)/python recipes/train_segmentation.py recipes/configs/synthetic_vessels.toml

# 3D segmentation on embedded synthetic CT-like volumes (mean Dice >= 0.80 on held-out volumes, ~2 min on CPU)
train-seg3d: install
	$(BIN)/python recipes/train_segmentation.py recipes/configs/synthetic_3d.toml

# Detection on embedded synthetic shapes: Faster R-CNN from scratch, mAP@50 >= 0.8 on held-out images, < 5 min on CPU
train-det: install
	$(BIN)/python recipes/train_detection.py recipes/configs/synthetic_shapes_fasterrcnn.toml

# CLIP on the embedded synthetic shapes (image<->text R@1 >= 0.8 on held-out images, a few minutes on CPU)
train-clip: install
	$(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		recipes/train_clip.py recipes/configs/clip_synthetic.toml

# Diffusion on embedded 32 px coloured shapes: class-conditioned DDPM, scored by a small classifier trained
# first on the same shapes (sample_accuracy >= 0.8, FID far below the untrained model's), < 5 min on CPU
train-diffusion: install
	$(BIN)/python recipes/train_diffusion.py recipes/configs/color_shapes_diffusion.toml

# Vision-language: llava_tiny answers questions about rendered shapes (closed accuracy >= 0.8 on held-out scenes)
train-vlm: install
	$(BIN)/python recipes/train_vlm.py recipes/configs/synthetic_vqa_llava.toml

# Hyperparameter search: 6 trials of the digits CNN with median pruning (study in runs/neurotrain.db), then
# runs/classification/digits_cnn_tune/best.toml, which `neurotrain train` runs as is
tune: install
	$(BIN)/neurotrain tune recipes/configs/digits_cnn_tune.toml

# Debian packages some tests need: Chromium (demo screenshot), g++ (DeepSpeed JIT-builds its CPU ops) and
# PostgreSQL (runs-database tests start a server: tests/pg_server.py; Debian keeps its programs off PATH).
# Installed when missing and run as root; otherwise those tests skip, listed at the end of `make test`,
# and under CI=true (where .ci/run installs them) the suite stops at once with one line naming what is missing.
SYSTEM_PACKAGES := chromium g++
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq $$missing >/dev/null || echo "could not install:$$missing"; \
	fi

# Two pytest-xdist workers (one per core of the reference machine), a test file per worker at a time so
# module-scoped trained runs are built once, longest files first (tests/conftest.py LONG_FILES: xdist's
# default reorder by test count would start them last); the 15 slowest tests are printed last.
TEST_WORKERS ?= 2
# DeepSpeed JIT-builds its CPU ops (cpu_adam for offload, the shared-memory all-reduce) on first use: build
# them once per machine (~/.cache/torch_extensions, reused by every later run) before the suite starts.
DEEPSPEED_OPS := CPUAdamBuilder ShareMemCommBuilder
deepspeed-ops: install system-packages
	@command -v g++ >/dev/null && $(BIN)/python -c "import sys; from deepspeed.accelerator import get_accelerator as a; \
		[a().create_op_builder(n).load(verbose=False) for n in sys.argv[1:]]" $(DEEPSPEED_OPS) >/dev/null 2>&1 \
		|| echo "DeepSpeed's CPU ops were not prebuilt (g++ missing?): the DeepSpeed tests build them, or skip"

test: install system-packages deepspeed-ops
	$(BIN)/python -m pytest -q tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

test-fast: install
	$(BIN)/python -m pytest -q tests -m "not slow"

lint: install
	$(BIN)/ruff check neurotrain_hf recipes tests benchmarks
	$(BIN)/ruff format --check neurotrain_hf recipes tests benchmarks

format: install
	$(BIN)/ruff format neurotrain_hf recipes tests benchmarks
	$(BIN)/ruff check --fix neurotrain_hf recipes tests benchmarks

bench: install
	$(BIN)/python benchmarks/trainer_overhead.py
	$(BIN)/python benchmarks/metrics_speed.py
	$(BIN)/python benchmarks/clip_throughput.py
	$(BIN)/python benchmarks/diffusion_throughput.py
	$(BIN)/python benchmarks/vlm_throughput.py
	$(BIN)/python benchmarks/detection_eval.py

# 64 requests from 8 concurrent clients to each demo Space (some bad uploads): answered/refused, latency, RSS
bench-demos: install
	$(BIN)/python benchmarks/demo_load.py

bench-metrics: install
	$(BIN)/python benchmarks/metrics_speed.py

spaces: install
	$(BIN)/python -c "from neurotrain_hf.metrics.hub import write_package_modules; write_package_modules()"
	$(BIN)/neurotrain metrics spaces --dest spaces/metrics

docs: install
	$(BIN)/python -m neurotrain_hf.config.reference > docs/configuration.md

clean:
	rm -rf runs .pytest_cache .ruff_cache
