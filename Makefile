# Every target does all of its own set-up, idempotently, from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
JOBS ?= 2

.PHONY: test test-slow reproduce lint bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[digits]'
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,digits]'
	touch $@ $(STAMP_RUN)

# --dist loadscope: a module's tests share one worker, so its module-scoped fixtures run once.
# JOBS=2 on 2 cores: with the notebooks run in-process nothing waits on a kernel any more, and a third worker
# only adds its start-up (measured from a fresh clone: 3 workers 587-616 s of CPU, 2 workers 566 s; both ~5 min).
test: $(STAMP_DEV)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadscope --durations=15 -q

test-slow: $(STAMP_DEV)
	$(BIN)/python -m pytest -m slow -q

lint: $(STAMP_DEV)
	$(BIN)/ruff check ldjax tests benchmarks
	$(BIN)/ruff format --check ldjax tests benchmarks

reproduce: $(STAMP_RUN)
	$(BIN)/ldjax reproduce --quick

bench: $(STAMP_RUN)
	$(BIN)/python benchmarks/run_all.py

# One GPU, <= 10 min: NTK, GPT-2-small predict vs train step, attribution throughput, at "highest" and TF32.
bench-gpu: $(STAMP_RUN)
	$(BIN)/python benchmarks/bench_gpu.py

clean:
	rm -rf $(VENV) results
