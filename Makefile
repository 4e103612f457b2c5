# Tidelog developer commands. `make run` and `make test` work on a fresh machine with Python >= 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
LINKS  := .build/mypy/tidelog
DATA   ?= data
PYTEST_ARGS ?=

.PHONY: setup run test lint unit fmt bench-log bench-quick bench bench-full bench-groups bench-cluster bench-profile bench-sasl clean e2e e2e-build images images-docker

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# mypy and import-linter see the import names (tidelog.broker) through symlinks to the folders.
$(LINKS)/broker $(LINKS)/operator:
	mkdir -p $(LINKS)
	ln -sfn ../../../broker $(LINKS)/broker
	ln -sfn ../../../operator $(LINKS)/operator

setup: $(STAMP) $(LINKS)/broker $(LINKS)/operator

## run: a standalone broker on 127.0.0.1:9092, data under ./data, metrics on 127.0.0.1:9404
run: setup
	$(BIN)/tidelog broker --data-dir $(DATA) --listen 127.0.0.1:9092

lint: setup
	$(BIN)/ruff check broker operator tests e2e bench
	$(BIN)/ruff format --check broker operator tests e2e bench
	$(BIN)/mypy -p tidelog.broker -p tidelog.operator
	PYTHONPATH=.build/mypy $(BIN)/lint-imports

unit: setup
	$(BIN)/pytest $(PYTEST_ARGS)

## test: lint, type-check, layer-check, then every unit and integration test
test: lint unit

fmt: setup
	$(BIN)/ruff check --fix broker operator tests e2e bench
	$(BIN)/ruff format broker operator tests e2e bench

## bench-quick / bench / bench-full: Tidelog and Apache Kafka side by side (about 2 / 6-20 / 50 minutes),
## results in bench/results/ (see bench/README.md)
bench-quick: setup
	$(MAKE) -C bench quick
bench: setup
	$(MAKE) -C bench default
bench-full: setup
	$(MAKE) -C bench full
## bench-groups / bench-cluster / bench-profile: consumer-group workloads; Tidelog x3 vs Kafka x3 (RF=3,
## acks=all: throughput, ack latency, leader failover; needs etcd);
## py-spy profiles of the broker under produce and fetch
bench-groups: setup
	$(MAKE) -C bench groups
bench-cluster: setup
	$(MAKE) -C bench cluster
bench-profile: setup
	$(MAKE) -C bench profile
## bench-sasl: SASL_SSL (SCRAM-SHA-512, TLS 1.3) produce and consume throughput, Tidelog vs Kafka (~3 min)
bench-sasl: setup
	$(MAKE) -C bench sasl

## bench-log: the log storage micro-benchmark (append and sendfile read vs dd on the same disk)
bench-log: setup
	$(BIN)/python bench/log_micro.py

## e2e: the real-Kubernetes suite: on the cluster KUBECONFIG names, or on the local provider, brought
## up (building its components on first use, cached under /var/cache/tidelog-e2e) and torn down around it
e2e: setup images
	PYTHON=$(abspath $(BIN))/python e2e/run-local.sh

## images: the broker and operator images, tidelog/{broker,operator}:<version>-e2e, as OCI archives in
## /var/cache/tidelog-e2e/images (no Docker; base from debootstrap, cached; root). `up` imports them.
images: setup
	PYTHON=$(abspath $(BIN))/python e2e/images/build.sh

## images-docker: the same archives through broker/Dockerfile and operator/Dockerfile (starts a private
## dockerd from Debian's docker.io if none answers, and stops it)
images-docker: setup
	PYTHON=$(abspath $(BIN))/python e2e/images/build.sh --docker

## e2e-build: build (or find cached) the local cluster's components: Kubernetes, etcd, CoreDNS, helm
e2e-build:
	e2e/cluster/local/build.sh

clean:
	rm -rf .build build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
