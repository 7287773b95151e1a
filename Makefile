# xdpsec — see README.md. `make demo` and `make test` do their own set-up.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin
# Integration tests run daemons and strongSwan in namespaces; keep the suite
# bounded so a hang fails fast instead of eating CI's budget.
TEST_TIMEOUT ?= 20m
# One VM boot takes 10-20 s under TCG; the first run also downloads Debian's
# kernel (about 70 MB) into the rig's cache.
TEST_VM_TIMEOUT ?= 10m

.PHONY: all build deps test test-vm test-short demo bench generate lint clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

deps:
	@./scripts/deps.sh

# Everything, as root: unit, fuzz seeds, BPF, namespace and interop tests.
# Packages run one at a time (-p 1): the integration tests share the two CPUs
# with daemons and charon processes, and parallel packages only add timeouts.
test: deps lint
	$(GO) test -p 1 -count=1 -timeout $(TEST_TIMEOUT) ./...

# Only the tests that boot a VM (internal/vm, Debian's kernel with ESP under
# qemu): `make test` runs them too, as part of ./...
test-vm: deps
	$(GO) test -count=1 -p 1 -timeout $(TEST_VM_TIMEOUT) -run 'VM' -v ./internal/vm/ ./offload/xfrm/ ./cmd/xdpsecd/

# Quick feedback while coding: run it as a normal user and the tests that
# need root (namespaces, BPF, daemons) skip themselves.
test-short:
	$(GO) test -short ./...

demo: deps build
	$(BIN)/xdpsec-bench demo --bin $(BIN)

# Throughput against plain routing, strongSwan and wireguard-go (docs/benchmarks.md).
bench: deps build
	$(BIN)/xdpsec-bench bench --bin $(BIN)

generate:
	$(GO) generate ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
