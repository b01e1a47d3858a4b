# The README's commands. Every target is phony: make is only a launcher here.
.PHONY: build run test test-go test-e2e lint bench compare fuzz soak cluster clean

ADDR ?= :8080
GO   ?= go
BIN  := bin

build:
	$(GO) build -o $(BIN)/noom ./server
	$(GO) build -o $(BIN)/noom-bench ./bench

run:
	$(GO) run ./server -addr $(ADDR)

test: test-go test-e2e

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# Browser tests: real Chromium driven by playwright-core (see static/e2e).
test-e2e: build
	cd static/e2e && npm test

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

bench:
	$(GO) run ./bench $(BENCHFLAGS)

compare:
	$(GO) run ./bench -compare $(BENCHFLAGS)

clean:
	rm -rf $(BIN)
