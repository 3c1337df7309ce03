# `make run` and `make test` work on a fresh machine: each creates .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# Python caches each module's bytecode on first import. Where PYTHONDONTWRITEBYTECODE is set (the machines we
# run on set it) every process compiles torch and dagster again: 4 s of CPU a process, and a test run starts
# hundreds of them (training launches, Dagster's step processes). The caches land in __pycache__/ (git ignores it).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup run small test ui bench sample clean system-packages

setup: $(STAMP) system-packages

# The python tool runs model-written code inside bubblewrap (training/sandbox.py): Debian's package, installed
# when missing (as root, with apt-get); CRAWL2CHAT_SANDBOX=python opts out to the in-Python layers alone.
system-packages:
	@command -v bwrap >/dev/null || [ "$$CRAWL2CHAT_SANDBOX" = python ] || { \
	  echo "installing bubblewrap, the python tool's kernel boundary"; \
	  apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; } || { \
	  echo "bubblewrap is missing: apt-get install bubblewrap, or set CRAWL2CHAT_SANDBOX=python"; exit 1; }

# torch goes in first, pinned: an unpinned torch pulled in by another package brings gigabytes of CUDA wheels.
# --no-compile: Python compiles a module the first time it is imported; compiling every file installed (torch's
# thousands) made the install 86 s instead of 36 s here.
PIP := $(BIN)/pip install -q --no-compile
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $(STAMP)

run: setup
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/crawl2chat run

# The CPU recipe that learns (issue 11; 42 min from a fresh clone on 2 fp32 cores, bench/BENCHMARKS.md): a crawl of Debian's
# documentation (the apt packages scripts/build_doc_pages.py names, installed when missing), the whole graph, a base
# model that copies, SFT and RL, in data-small/.
SMALL := $(CURDIR)/data-small
small: setup
	@missing="$$($(BIN)/python -m scripts.build_doc_pages --missing)"; [ -z "$$missing" ] || { \
	  echo "installing the documentation packages the crawl is built from: $$missing"; \
	  apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null; } || { \
	  echo "missing: apt-get install $$missing"; exit 1; }
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -m scripts.build_doc_pages --out $(SMALL)/warc/docs
	$(BIN)/crawl2chat run --source $(SMALL)/warc/docs --crawl docs --data $(SMALL)/data --config infra/profiles/small.yaml

# The page tests drive Debian's chromium headless (Playwright with executable_path; it downloads no browser); the
# Postgres tests start a cluster of their own with Debian's postgresql binaries. Two test processes (pytest-xdist):
# one makes the sample run and runs the tests that read it, the other the rest (tests/conftest.py).
test: setup
	@command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing chromium and postgresql, for the page and Postgres tests"; \
	  apt-get update -q >/dev/null && apt-get install -y -q chromium postgresql >/dev/null; } || { \
	  echo "missing: apt-get install chromium postgresql"; exit 1; }
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

ui: setup
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/crawl2chat ui

bench: setup
	$(PIP) -e '.[bench]'
	$(BIN)/python -m bench.run_all
	$(BIN)/python -m bench.bench_dedup
	$(BIN)/python -m bench.bench_url_filter
	$(BIN)/python -m bench.bench_extract
	$(BIN)/python -m bench.bench_remote
	$(BIN)/python -m bench.bench_pii
	$(BIN)/python -m bench.bench_tokenizer
	$(BIN)/python -m bench.bench_engine
	$(BIN)/python -m bench.bench_sft_data
	$(BIN)/python -m bench.bench_pretrain

# Rebuilds the bundled sample crawl from Debian documentation packages (needs apt; the result is committed).
sample: setup
	$(BIN)/python scripts/build_sample_crawl.py

clean:
	rm -rf $(VENV) data data-small .dagster_home
