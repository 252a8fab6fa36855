# Privata's make targets. The README names the two a newcomer needs:
# `make demo` and `make test`.

GO      ?= go
BIN     := bin/privata
GOFLAGS ?=

.PHONY: all build test vet fuzz bench demo clean

all: build

build:
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/controller

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Every test runs against real PostgreSQL clusters started from the local
# binaries; a missing binary fails the run with instructions.
test: vet build
	$(GO) test $(GOFLAGS) -count=1 -timeout 80m ./...

# Runs every Go fuzz target in the module for FUZZTIME each (a target that
# finds a failure writes it under its package's testdata/fuzz and fails).
# The first run builds pg_query's C code with coverage instrumentation,
# which takes a few minutes.
FUZZTIME ?= 10s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test $(GOFLAGS) -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test $(GOFLAGS) $$pkg -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME); \
	  done; \
	done

# Benchmarks print their figures (and ratios against a baseline measured in
# the same run); they assert nothing. The read path's: pgbench select-only
# with read audit off and on, Zipf point reads with the cache off and on
# (hit rate), the change consumer's rate and lag, and the delay from commit
# to cache invalidation under 5,000 changes/s.
# scripts/bench-proxy.sh compares pgbench directly, through Privata and
# through PgBouncer (BENCH_SECONDS, BENCH_SCALE). Rewrite: what rewriting
# an upsert, COPY or TRUNCATE for split tables costs; SplitTables: reads
# and inserts on split tables against plain ones, directly and through
# Privata.
bench: build
	$(GO) test $(GOFLAGS) -run '^$$' -bench Adopt -benchtime 1x -timeout 60m ./storage
	$(GO) test $(GOFLAGS) -run '^$$' -bench 'Analyze|Guard' ./rewrite
	$(GO) test $(GOFLAGS) -run '^$$' -bench CrossRegion -benchtime 1x -timeout 30m ./fdw
	$(GO) test $(GOFLAGS) -run '^$$' -bench 'Relay|ClientSide' ./proxy
	$(GO) test $(GOFLAGS) -run '^$$' -bench Rewrite ./rewrite
	$(GO) test $(GOFLAGS) -run '^$$' -bench SplitTables -benchtime 1x -timeout 30m ./proxy
	$(GO) test $(GOFLAGS) -run '^$$' -bench 'ReadAuditCost|CacheZipf' -benchtime 1x -timeout 30m ./proxy
	$(GO) test $(GOFLAGS) -run '^$$' -bench 'ConsumerBacklog' -benchtime 200000x -timeout 30m ./logical
	$(GO) test $(GOFLAGS) -run '^$$' -bench 'ConsumerLag' -benchtime 1x -timeout 30m ./logical
	$(GO) test $(GOFLAGS) -run '^$$' -bench 'InvalidationDelay' -benchtime 1x -timeout 30m ./cmd/controller
	scripts/bench-proxy.sh

# Runs `privata demo`: local clusters for examples/clinic's regions under
# .privata/dev (created on the first run, reused after), the clinic's
# migrations and both Synthea sets sent through Privata as an application
# would, a short tour of what Privata did, then serving until Ctrl-C.
# DEMO_FLAGS passes flags (e.g. --listen 127.0.0.1:7432).
demo: build
	$(BIN) demo $(DEMO_FLAGS)

clean:
	rm -rf bin .privata
