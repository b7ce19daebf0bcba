# Two set-up commands: `make demo` and `make test`. Both create .venv when missing.
# `make server` starts a Prefect server with its UI, the deployments and a worker
# (`tv100 server start`); `make server-stop` stops it. `make bench` runs the benchmarks
# (bench/README.md) after creating the img2dataset baseline's own venv (`make bench-env`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tv100-installed

.PHONY: install demo test lint typecheck pytest clean-data server server-stop bench bench-env

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The download bench's baseline, img2dataset 1.47 (its own venv: its pins clash with tv100's).
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.img2dataset-installed
$(BENCH_STAMP):
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(BENCH_VENV)/bin/python -m pip install -q img2dataset==1.47.0
	@touch $(BENCH_STAMP)

bench-env: $(BENCH_STAMP)

# Each bench prints ratios against its baseline, run side by side; numbers go to BENCHMARKS.md.
bench: install bench-env
	$(PY) bench/download.py --img2dataset $(BENCH_VENV)/bin/img2dataset
	$(PY) bench/embed.py
	$(PY) bench/hashing.py
	$(PY) bench/neardup.py

demo: install
	$(VENV)/bin/tv100 demo

server: install
	$(VENV)/bin/tv100 server start

server-stop: install
	$(VENV)/bin/tv100 server stop

lint: install
	$(VENV)/bin/ruff check .

# mypy resolves tv100.* through a view of the package (links to the top-level folders).
MYPY_VIEW := $(VENV)/mypy-view
typecheck: install
	@mkdir -p $(MYPY_VIEW)/tv100
	@for p in flows tasks storage sandbox; do ln -sfn "$(CURDIR)/$$p" $(MYPY_VIEW)/tv100/$$p; done
	MYPYPATH=$(MYPY_VIEW) $(VENV)/bin/mypy -p tv100.tasks -p tv100.storage

pytest: install
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean-data:
	rm -rf data
