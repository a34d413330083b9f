# Meshfed. Everything the project needs comes through `go` (modules and the
# pinned tools in go.mod); nothing else is installed.
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/meshfed/meshfed/cmd/internal/cli.Version=$(VERSION)
# The test budget: `make test` must stay well under 15 minutes on 2 cores.
TEST_TIMEOUT ?= 15m

.PHONY: all build run test bench lint proto clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/meshd ./cmd/meshd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/meshctl ./cmd/meshctl
	$(GO) build -o $(BIN)/xdsapp ./test/xdsapp

# A local control plane on loopback with its data under .meshfed/dev.
run: build
	./$(BIN)/meshd dev

# Every test, under the race detector. End-to-end tests under test/ build
# their own meshd and meshctl binaries.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# Benchmarks: package micro-benchmarks, the HTTP API load generator against
# a real meshd process, then a real three-node cluster (writes through every
# node, leader failover). Figures are printed, never asserted.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./api/... ./global/... ./ca ./xds/... ./zone/...
	$(GO) run ./test/bench/apibench -meshd ./$(BIN)/meshd
	$(GO) run ./test/bench/clusterbench -meshd ./$(BIN)/meshd
	$(GO) run ./test/bench/syncbench
	$(GO) run ./test/bench/xdsbench -meshd ./$(BIN)/meshd

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Regenerate the sync protocol's Go code (committed) from sync/proto with
# buf and the protoc plugins pinned as tools in go.mod.
proto:
	cd sync/proto && $(GO) tool buf lint && $(GO) tool buf generate

clean:
	rm -rf $(BIN) .meshfed
