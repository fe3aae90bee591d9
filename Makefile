# Two commands do all the set-up: `make demo` and `make test` (README).
PYTHON ?= python3
VENV ?= .venv
# Torch is installed first, on its own, so that pip never resolves a plain `torch`
# requirement to the multi-GB CUDA wheels on a CPU-only machine. Override, e.g.:
#   make test TORCH_SPEC="torch==2.5.1" TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
DEMO_OUT ?= demo-out
DOCS_RUNS ?= docs-runs
BIN := $(VENV)/bin
STAMP := $(VENV)/.xpt-installed

.PHONY: demo test lint env clean docs-images

env: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_env.sh
	PYTHON="$(PYTHON)" VENV="$(VENV)" TORCH_SPEC="$(TORCH_SPEC)" TORCH_PIP_ARGS="$(TORCH_PIP_ARGS)" \
		bash scripts/setup_env.sh
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/xpt demo --out $(DEMO_OUT)

# The README's pictures from seeds 0-2 of the demo (about 30 minutes on 2 cores the first time).
docs-images: $(STAMP)
	bash scripts/docs_images.sh $(DOCS_RUNS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# One pytest worker per usable core (pytest-xdist; at most TEST_WORKERS_MAX), whole files per
# worker so each module-scoped fixture is built once, the longest files first (the order of
# tests/conftest.py), one compute thread per worker (more threads than cores leave OpenMP and
# OpenBLAS spinning). `make test TEST_WORKERS=0` runs serially.
TEST_WORKERS ?= auto
TEST_WORKERS_MAX ?= 8
test: lint
	PYOPENGL_PLATFORM=$${PYOPENGL_PLATFORM:-egl} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
		MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} \
		$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses $(TEST_WORKERS_MAX) --dist loadfile \
		--no-loadscope-reorder

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
