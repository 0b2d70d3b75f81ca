# kmsd: `make run` starts a single node; `make test` runs every test.
GO      ?= go
LISTEN  ?= 127.0.0.1:4599
DATA    ?= ./data
# Executions per fuzz target: a count, not a duration, since a duration races
# the fuzz coordinator's deadline in go1.26 (golang/go#75804: a spurious
# "context deadline exceeded" failure with no crasher).
FUZZTIME ?= 20000x
# Packages with concurrency run under the race detector.
RACE_PKGS = ./agent/... ./cluster/... ./hsmpool/... ./batch/... ./cache/... ./quota/... ./bench/... ./cmd/kmsbench/... ./kmsplugin/... ./cmd/kmsd/... ./xks/...
BENCHTIME ?= 10s

.PHONY: all build run deps test-deps test vet unit race scan fuzz e2e bench bench-report bench-jobs cluster cluster-down deploy-check image clean

all: build

deps:
	@scripts/deps.sh

test-deps:
	@scripts/deps.sh --test

build:
	$(GO) build -o bin/kmsd ./cmd/kmsd
	$(GO) build -o bin/kmsbench ./cmd/kmsbench

run: deps build
	bin/kmsd serve --listen $(LISTEN) --data-dir $(DATA)

vet:
	$(GO) vet ./...
	$(GO) vet -tags kmsdtest ./...

# Everything: vet, unit tests, race tests, the at-rest scan, short fuzzing
# of every decoder, and the AWS CLI end-to-end script.
test: test-deps build vet unit race scan fuzz e2e

unit:
	KMSD_REQUIRE_HSM=1 $(GO) test -count=1 ./...

race:
	KMSD_REQUIRE_HSM=1 $(GO) test -count=1 -race $(RACE_PKGS)

scan:
	KMSD_REQUIRE_HSM=1 $(GO) test -count=1 -tags kmsdtest -run 'NoPlaintext|Export' ./agent/ ./hsmpool/

fuzz:
	@set -e; for spec in \
	  ./agent:FuzzParseBlob ./agent:FuzzRequest ./agent:FuzzWireJSON \
	  ./cluster:FuzzDecodeCommand ./cluster:FuzzDecodeSnapshot ./cluster:FuzzMultiRegionCommands \
	  ./hsmpool:FuzzOpen ./agent/sigv4:FuzzVerify ./bench:FuzzIdealOpen ./agent/audit:FuzzFilter \
	  ./agent/policy:FuzzParse ./agent:FuzzAsymRequest ./hsmpool:FuzzOAEPDecode \
	  ./batch/esdk:FuzzReadHeader ./batch/esdk:FuzzBody ./batch/esdk:FuzzCheck \
	  ./agent:FuzzParseStoreBlob ./xks:FuzzRoute ./agent:FuzzImportToken ./internal/mldsamu:FuzzVerify ./internal/sm2pke:FuzzDecrypt; do \
	  pkg=$${spec%%:*}; fn=$${spec##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test -run XXX -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg >/tmp/kmsd-fuzz.log 2>&1 || { cat /tmp/kmsd-fuzz.log; exit 1; }; \
	done

e2e: build
	scripts/e2e-cli.sh
	scripts/e2e-cluster.sh
	scripts/e2e-xks.sh

# A local cluster of N separate kmsd processes (deploy/local/cluster.sh).
CLUSTER_DIR ?= ./cluster-data
N ?= 3
cluster: build
	deploy/local/cluster.sh up $(CLUSTER_DIR) $(N)

cluster-down:
	deploy/local/cluster.sh down $(CLUSTER_DIR)

# The ceiling (ideal twin, in-process) then the node started by `make run`.
bench: build
	bin/kmsbench --ideal --duration $(BENCHTIME)
	bin/kmsbench --endpoint http://$(LISTEN) --credentials $(DATA)/credentials --duration $(BENCHTIME)

# The README's benchmark report: one run, one machine (scripts/bench-report.sh).
bench-report:
	@$(MAKE) -s build >&2
	@scripts/bench-report.sh

# Bulk jobs (README "Bulk jobs"): `kmsd job encrypt` of 1 GiB of 1 MiB files
# and of 4 KiB files against a local kmsd, caching on and off, next to Go's
# raw AES-256-GCM rate; the large-file data sets are averaged over three passes. KMSD_JOB_BENCH_DIR=/dev/shm takes the disk out.
bench-jobs:
	$(GO) test -run XXX -bench 'BenchmarkJob/(1MiB-files|one-file)' -benchtime 3x -timeout 60m ./cmd/kmsd/
	$(GO) test -run XXX -bench 'BenchmarkJob/4KiB-files' -benchtime 1x -timeout 60m ./cmd/kmsd/

deploy-check:
	$(GO) test -count=1 -run 'Kubernetes|Systemd|EncryptionConfiguration|DeployFlags' ./cmd/kmsd/

# Needs a Docker engine (not available on the development machines).
image:
	docker build -f deploy/container/Dockerfile -t ghcr.io/kmsd/kmsd:dev .

clean:
	rm -rf bin
