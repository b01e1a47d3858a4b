# The README's commands. Every target is phony: make is only a launcher here.
.PHONY: build run test test-go test-e2e lint bench compare fuzz soak cluster clean

FUZZTIME ?= 60s

ADDR ?= :8080
FLAGS ?=
GO   ?= go
BIN  := bin

build:
	$(GO) build -o $(BIN)/noom ./server
	$(GO) build -o $(BIN)/noom-bench ./bench

# FLAGS passes more server flags: make run FLAGS=-tls-self-signed
run:
	$(GO) run ./server -addr $(ADDR) $(FLAGS)

test: test-go test-e2e

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# Browser tests: real Chromium driven by playwright-core (see static/e2e);
# then the chat and the call again over HTTPS with a self-signed certificate.
test-e2e: build
	cd static/e2e && npm test
	cd static/e2e && NOOM_TLS=1 node --test --test-concurrency=1 chat.test.mjs call.test.mjs

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

bench:
	$(GO) run ./bench -start $(BENCHFLAGS)

compare:
	$(GO) run ./bench -compare $(BENCHFLAGS)

# Each fuzz target for FUZZTIME; prints inputs tried and fails on a crasher
# (saved under server/testdata/fuzz, where `go test` replays it from then on).
fuzz:
	@for target in FuzzDecode FuzzFrames; do \
		echo "== $$target for $(FUZZTIME)"; \
		$(GO) test ./server -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) > /tmp/noom-fuzz.log 2>&1; status=$$?; \
		grep -E '^fuzz: elapsed' /tmp/noom-fuzz.log | tail -1; grep -E -A20 '^--- FAIL' /tmp/noom-fuzz.log; \
		[ $$status -eq 0 ] || exit $$status; \
	done

clean:
	rm -rf $(BIN)
