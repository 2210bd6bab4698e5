# Everything a fresh machine needs: `make run` tags the demo catalogue, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BUILD  := build
MUSICNN_VERSION := 0.1.0
ORIGINAL := $(BUILD)/musicnn-$(MUSICNN_VERSION)
MODELS   := $(BUILD)/models
DEMO     := $(BUILD)/demo-catalogue
DEMO_OUT := $(BUILD)/demo-output

export MUSICNN_BEAM_MODELS := $(abspath $(MODELS))
export MUSICNN_ORIGINAL := $(abspath $(ORIGINAL))

FUZZ_SECONDS ?= 600

.PHONY: all venv models run test bench fuzz clean

all: run

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The original checkpoints ship only in musicnn's wheel; it is read, never installed (its pins are from 2019).
$(ORIGINAL)/.unpacked: | $(VENV)/.installed
	mkdir -p $(BUILD)/download
	$(PY) -m pip download --quiet --no-deps musicnn==$(MUSICNN_VERSION) -d $(BUILD)/download
	rm -rf $(ORIGINAL) && mkdir -p $(ORIGINAL)
	$(PY) -m zipfile -e $(BUILD)/download/musicnn-$(MUSICNN_VERSION)-py3-none-any.whl $(ORIGINAL)
	touch $@

models: $(MODELS)/.converted
$(MODELS)/.converted: $(ORIGINAL)/.unpacked $(wildcard models/*.py models/metadata/*.json) $(VENV)/.installed
	$(PY) -m models.convert --original $(ORIGINAL)/musicnn --out $(MODELS)
	touch $@

# Written once: rewriting it would give every file a new version, and `make run` would tag it all again.
$(DEMO)/.written: $(VENV)/.installed $(wildcard demo/*.py)
	$(PY) -m demo --out $(DEMO)
	touch $@

# The demo store grows run after run (a second `make run` skips every file). An output written
# before the store existed (plain Parquet folders) is replaced.
run: models $(DEMO)/.written
	@test -d $(DEMO_OUT)/runs/_delta_log || rm -rf $(DEMO_OUT)
	$(PY) -m pipeline --input $(DEMO) --output $(DEMO_OUT)
	$(PY) -m pipeline.report $(DEMO_OUT)

test: models
	$(PY) -m pytest

bench: models
	$(PY) -m bench.run
	$(PY) -m bench.skip --append

# Coverage-guided fuzzing of decoding; what it finds lands in tests/fuzz_findings/ (see tests/fuzz_decode.py).
fuzz: $(VENV)/.fuzz-installed
	mkdir -p $(BUILD)/fuzz-corpus
	$(PY) -m tests.fuzz_decode -max_total_time=$(FUZZ_SECONDS) -timeout=30 -rss_limit_mb=2048 \
		-artifact_prefix=tests/fuzz_findings/ $(BUILD)/fuzz-corpus

$(VENV)/.fuzz-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[fuzz]'
	touch $@

clean:
	rm -rf $(BUILD) $(VENV)
