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

# Proxy throughput and latency against PostgreSQL directly and PgBouncer:
# prints a table, asserts nothing (BENCH_SECONDS, BENCH_SCALE).
bench: build
	scripts/bench-proxy.sh

# Each fuzz target runs briefly; FUZZTIME per target.
FUZZTIME ?= 10s
FUZZ_TARGETS := ./proxy:FuzzClientMessages

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test $(GOFLAGS) -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

clean:
	rm -rf bin .privata
