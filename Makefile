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
AIRFLOW_VENV := $(BUILD)/airflow-venv

export MUSICNN_BEAM_MODELS := $(abspath $(MODELS))
export MUSICNN_ORIGINAL := $(abspath $(ORIGINAL))
export MUSICNN_BEAM_AIRFLOW_VENV := $(abspath $(AIRFLOW_VENV))

FUZZ_SECONDS ?= 600

.PHONY: all venv models run test test-unit test-integration test-e2e bench fuzz clean

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
	$(PY) -m musicnn_beam.models.convert --original $(ORIGINAL)/musicnn --out $(MODELS)
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
	$(PY) -m pipeline.report $(DEMO_OUT) --html $(BUILD)/demo-report.html

# Airflow pins hundreds of packages of its own (protobuf, grpcio, google-*), so it gets its own venv,
# pinned in deploy/airflow/requirements.txt only; the DAG runs the pipeline with .venv's python.
# tests/test_airflow.py runs the DAG in it.
.PHONY: airflow
airflow: $(AIRFLOW_VENV)/.installed
$(AIRFLOW_VENV)/.installed: deploy/airflow/requirements.txt
	rm -rf $(AIRFLOW_VENV)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r deploy/airflow/requirements.txt
	touch $@

# tests/test_html_report.py opens the HTML page (reports/page.py) in headless Chromium: Debian's package (root, as here and in CI).
.PHONY: chromium
chromium: /usr/bin/chromium
/usr/bin/chromium:
	apt-get update && apt-get install -y --no-install-recommends chromium

# Three layers (pyproject.toml's markers; tests/conftest.py refuses a test without exactly one):
# unit (no subprocess, server or model run; under a minute), integration (in-process runs, storage
# servers, the models), e2e (the CLI as a subprocess, kills and races, the console, Airflow, Chromium,
# the wheel, the Dataflow template). Two processes share the tests a file at a time (pytest-xdist):
# a file's fixtures are made once, and on two cores the suite takes some 60% of the time of one.
PYTEST := $(PY) -m pytest -n 2 --dist loadfile

test: models airflow chromium
	$(PYTEST)

test-unit: venv
	$(PYTEST) -m unit

test-integration: models
	$(PYTEST) -m integration

test-e2e: models airflow chromium
	$(PYTEST) -m e2e

bench: models
	$(PY) -m bench.run
	$(PY) -m bench.skip --append
	$(PY) -m bench.similar --append
	$(PY) -m bench.memory --append

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

# Dataflow (README, "From a bucket of audio to a Dataflow GPU job"): the worker image, which is also
# the Flex Template's launcher image, and the template spec built from it and deploy/dataflow/metadata.json.
#   make worker-image flex-template IMAGE=us-central1-docker.pkg.dev/PROJECT/musicnn-beam/worker:0.1.0 TEMPLATE_BUCKET=BUCKET
FLEX_TEMPLATE = gs://$(TEMPLATE_BUCKET)/templates/musicnn-beam.json
.PHONY: worker-image flex-template

worker-image:
	$(if $(IMAGE),,$(error set IMAGE, the worker image to build and push, e.g. IMAGE=us-central1-docker.pkg.dev/PROJECT/musicnn-beam/worker:0.1.0))
	docker build -t $(IMAGE) .
	docker push $(IMAGE)

flex-template:
	$(if $(IMAGE),,$(error set IMAGE, the pushed worker image (make worker-image), e.g. IMAGE=us-central1-docker.pkg.dev/PROJECT/musicnn-beam/worker:0.1.0))
	$(if $(TEMPLATE_BUCKET),,$(error set TEMPLATE_BUCKET, the bucket (a name, no gs://) that holds the template spec))
	gcloud dataflow flex-template build $(FLEX_TEMPLATE) --image $(IMAGE) --sdk-language PYTHON \
		--metadata-file deploy/dataflow/metadata.json
