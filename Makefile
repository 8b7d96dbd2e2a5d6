# tally: the two commands are `make demo` (run the demo) and `make test` (run every test).
GO        ?= go
FUZZTIME  ?= 10s
BENCHTIME ?= 1s

.PHONY: demo serve build test check parity kafka unit fuzz bench bench-quick python

demo:
	$(GO) run ./cmd/tally demo

# The demo on a 3-node cluster of local processes (README "Cluster").
.PHONY: demo-cluster
demo-cluster:
	$(GO) run ./cmd/tally demo --nodes 3

# The demo's stream through a local Kafka broker (scripts/kafka.sh; stopped on exit): tally
# consumes the topic itself (README "Streaming from Kafka").
.PHONY: demo-kafka
demo-kafka:
	@dir=$$(mktemp -d); trap 'scripts/kafka.sh stop $$dir; rm -rf $$dir' EXIT; \
	addr=$$(scripts/kafka.sh start $$dir | tail -1) && \
	$(GO) run ./cmd/tally demo --kafka $$addr --data-dir $$dir/tally-data

# The same into a 3-node cluster whose nodes share one consumer group.
.PHONY: demo-kafka-cluster
demo-kafka-cluster:
	@dir=$$(mktemp -d); trap 'scripts/kafka.sh stop $$dir; rm -rf $$dir' EXIT; \
	addr=$$(scripts/kafka.sh start $$dir | tail -1) && \
	$(GO) run ./cmd/tally demo --kafka $$addr --nodes 3 --data-dir $$dir/tally-data

serve:
	$(GO) run ./cmd/tally serve

build:
	$(GO) build -o bin/tally ./cmd/tally

# Every test: static checks; the ONNX parity fixtures from scikit-learn/XGBoost/LightGBM and
# onnxruntime (pinned, in .venv); unit, HTTP and whole-process tests; the Python SDK's pytest
# suite and the seed's flow end to end; a short run of every fuzz target; and the load-test
# harness in --quick mode with its Redis and Feast peers.
test: check deploy-check parity kafka chromium unit python feast-compat fuzz bench-quick

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) build ./...

# Python models and onnxruntime's outputs for the score/onnx parity test, and MLflow (pinned,
# in the same .venv) for the real-endpoint test of score/mlflow.
parity:
	score/onnx/parity/generate.sh
	score/mlflow/testdata/setup.sh

unit:
	TALLY_REQUIRE_PARITY=1 TALLY_REQUIRE_MLFLOW=1 TALLY_REQUIRE_KAFKA=1 TALLY_REQUIRE_CHROMIUM=1 $(GO) test -count=1 -timeout 20m ./...

# The Kafka 3.9 broker's jars (Maven Central, cached in ~/.cache/tally/kafka) for the tests of
# kafkasource and systemtest, which start brokers with scripts/kafka.sh (about 2 minutes of tests).
kafka:
	scripts/kafka.sh fetch

# deploy/kubernetes against Kubernetes' API schemas, offline (kubernetes-validate from PyPI
# ships them; cached in ~/.cache/tally), and the systemd unit through systemd-analyze verify;
# cmd/tally/deploy_test.go checks the tally side.
.PHONY: deploy-check
deploy-check:
	scripts/deploy-check.sh

# Debian's chromium (apt-get when missing) for the status page's browser test
# (systemtest TestClusterOperatorViews, driven by chromedp).
.PHONY: chromium
chromium:
	scripts/chromium.sh

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# Go benchmarks of every package.
bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./...

# The load-test harness: tally beside Redis and Feast, and a single node beside 3-node clusters
# (full run: `go run ./cmd/tally bench`; the cluster's alone: `make bench-cluster`).
bench-quick:
	scripts/bench-peers.sh redis feast
	$(GO) run ./cmd/tally bench --quick --cluster --out results/quick

# The cluster scenarios at full size (about 10 minutes on 2 cores).
.PHONY: bench-cluster
bench-cluster:
	$(GO) run ./cmd/tally bench --scenarios cluster --out results/cluster

# The Python SDK (python/): installed into .venv (editable, with its pinned pytest) and tested
# against real `tally serve` processes built from this checkout; then the seed's flow end to end
# (examples/fraud/run.sh --small, about a minute). PySpark (local mode), delta-spark and deltalake
# (scripts/spark-setup.sh) for the Spark and Delta tests.
python:
	scripts/python-setup.sh
	scripts/spark-setup.sh
	TALLY_REQUIRE_SERVER=1 TALLY_REQUIRE_SPARK=1 .venv/bin/python -m pytest -q python/tests examples/fraud/test_example.py

# Feast's SDK (0.67, in .venv-bench) against a real `tally serve`: `feast apply` on the repo
# `tally feast-repo` generates, get_online_features through the remote online store compared
# with tally's get-features, and pushes (about 1.5 minutes).
.PHONY: feast-compat
feast-compat:
	scripts/feast-setup.sh
	TALLY_REQUIRE_SERVER=1 .venv-bench/bin/python -m pytest -q python/feast_tests

# The seed's real-time fraud flow, end to end (examples/fraud/README.md): generate and backfill
# history, time-travel training data, train and track in MLflow, load the model, score a live
# stream. About 2-3 minutes; `examples/fraud/run.sh --small` takes under a minute.
.PHONY: example
example:
	GO=$(GO) examples/fraud/run.sh

# The Spark variant of the seed's flow (examples/fraud/run.sh --spark --small): PySpark DataFrames
# in and out, the training set in a Delta table, the model served from an MLflow Model Registry by
# alias. Not part of `make test` (Spark and an MLflow server start: several minutes on 2 cores);
# the pieces are tested there (systemtest/registry_test.go, python/tests/test_lakehouse.py).
.PHONY: example-spark
example-spark:
	GO=$(GO) examples/fraud/run.sh --spark --small
