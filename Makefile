# Two commands: `make demo` and `make test`. Both create .venv once (a stamp
# file records it) with the pinned dependencies and ffl_mm installed
# editable, so later runs start at once.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ffl_mm-installed
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q
WORK_DIR ?= work_dirs/demo
SEEDS ?= 0
BENCH_DIR ?= work_dirs/bench
BENCH_ROUNDS ?= 30
METHOD ?= ffl
PYTEST_ARGS ?=
TEST_WORKERS ?= 2
GPU_CHECK_DIR ?= work_dirs/gpu_check
GPU_ROUNDS ?= 20

.PHONY: venv extras deploy-extras demo test test-fast test-slow test-extras test-gpu gpu-check bench clean state-dict-record

venv: $(STAMP)

# The legacy editable install (--no-use-pep517) makes the checkout the
# distribution's location, where MMEngine and mim find ffl_mm/.mim/ (links to
# configs/ and tools/) for `ffl_mm::` config bases and `mim train ffl_mm`.
$(STAMP): requirements/runtime.txt requirements/tests.txt requirements/deploy.txt requirements/build.txt requirements/constraints.txt setup.py
	@echo ">> creating $(VENV) with $(PYTHON) (first run: a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -c requirements/constraints.txt -r requirements/build.txt -r requirements/runtime.txt -r requirements/tests.txt
	$(PIP_INSTALL) --no-deps --no-build-isolation --no-use-pep517 -e .
	@touch $@

# Optional tools (openmim for `mim train/test ffl_mm ...`, tensorboard),
# resolved against the pinned set so that nothing pinned moves.
extras: $(STAMP)
	$(PIP_INSTALL) -c requirements/constraints.txt -r requirements/optional.txt

# What tools/export.py --onnx needs (ONNX, ONNX Runtime, onnxscript), for an
# environment made without the test requirements (make venv has them).
deploy-extras: $(STAMP)
	$(PIP_INSTALL) -c requirements/constraints.txt -r requirements/deploy.txt

# FFL ResNet-32x2 (METHOD=mfef, dml, one, clilr, okddip, kdcl: any method
# folder of model-index.yml) and a single ResNet-32 on the embedded digits data, then
# the table of branches / ensemble / fused (OKDDip: leader) / baseline.
# SEEDS="0 1 2" for mean and std over three seeds.
demo: $(STAMP)
	$(BIN)/python tools/demo.py --method $(METHOD) --seeds $(SEEDS) --work-dir $(WORK_DIR)/$(METHOD)

# Training-step cost of every method of model-index.yml (its first
# CIFAR ResNet-32 config: CIFAR-100 shapes, batch 128) against
# cross-entropy-only branches and separate networks, on the CPU:
# BENCH_ROUNDS interleaved rounds after 3 warm-up rounds, one JSON per
# config in BENCH_DIR (docs/benchmarks.md).
bench: $(STAMP)
	mkdir -p $(BENCH_DIR)
	for folder in $$(sed -n 's|^  - \(configs/.*\)/metafile.yml|\1|p' model-index.yml); do \
	  config=$$(ls $$folder/*_resnet32x*_cifar100.py | head -n 1); \
	  $(BIN)/python tools/analysis_tools/benchmark.py $$config --iters $(BENCH_ROUNDS) --warmup 3 --json $(BENCH_DIR)/$$(basename $$config .py).json || exit 1; \
	done

# The suite CI runs (.ci/run): everything the project's own files install.
# TEST_WORKERS processes (pytest-xdist), one torch thread each: most tests
# are Python-bound, and two workers on two cores halve the wall time.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -m "not extras and not slow" -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The rows too long for `make test` (the conformance suite's ONNX Runtime,
# compile, two-rank and resume rows for every method); .ci/run runs them
# after `make test`.
test-slow: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -m "slow and not extras" -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The unit tests only: no end-to-end run in a fresh process.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -m "not e2e and not extras and not slow" -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The tests of what `make extras` adds (mim train / mim test).
test-extras: extras
	$(BIN)/python -m pytest tests -m extras $(PYTEST_ARGS)

# The tests marked cuda (mixed precision of every method, recomputation and
# compile against eager, channels-last, 2-process NCCL with 2 GPUs); each is
# skipped, saying why, without CUDA.
test-gpu: $(STAMP)
	$(BIN)/python -m pytest tests -m cuda -rs $(PYTEST_ARGS)

# On a CUDA machine: test-gpu, then the benchmark of every method
# on the device with and without --amp, in one report
# ($(GPU_CHECK_DIR)/report.md, with the JSON files). Without CUDA it says so.
gpu-check: $(STAMP)
	$(BIN)/python tools/analysis_tools/gpu_check.py --out $(GPU_CHECK_DIR) --rounds $(GPU_ROUNDS)

# Record the state-dict keys and shapes of configs not recorded yet (a new
# config) in tests/data/state_dict_shapes.json; recorded ones stay as they
# are (tools/misc/state_dict_record.py --update CONFIG rewrites one).
state-dict-record: $(STAMP)
	$(BIN)/python tools/misc/state_dict_record.py

clean:
	rm -rf $(VENV) work_dirs ffl_mm/.mim *.egg-info
