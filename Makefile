# The README's commands. Every target is phony but one, the stamp of npm ci:
# make is only a launcher here.
.PHONY: build run test test-go test-race test-e2e e2e-tools lint bench compare fuzz soak cluster clean

FUZZTIME ?= 60s
SOAKTIME ?= 10m

ADDR ?= :8080
FLAGS ?=
# Go 1.26: the one on PATH, else where the official archive installs it.
GO   ?= $(shell command -v go || echo /usr/local/go/bin/go)
BIN  := bin
E2E  := static/e2e

build:
	$(GO) build -o $(BIN)/noom ./server
	$(GO) build -o $(BIN)/noom-bench ./bench

# FLAGS passes more server flags: make run FLAGS=-tls-self-signed
run:
	$(GO) run ./server -addr $(ADDR) $(FLAGS)

# Everything, on a fresh clone too: what the browser tests need from the
# machine is checked first (and installed as root), then lint, the Go tests
# under the race detector, the browser tests.
test: e2e-tools lint test-race test-e2e

# The Go tests without the race detector: quicker while iterating.
test-go:
	$(GO) test -count=1 ./...

# The Go tests under the race detector (nbio's accept hand-off is shown to
# it in server/race.go).
test-race:
	$(GO) test -race -count=1 ./...

# Browser tests: real Chromium driven by playwright-core (see static/e2e);
# then the chat and the calls (mesh and SFU) again over HTTPS with a self-signed certificate.
test-e2e: build $(E2E)/node_modules/.package-lock.json
	cd $(E2E) && npm test
	cd $(E2E) && NOOM_TLS=1 node --test --test-concurrency=1 chat.test.mjs call.test.mjs sfu.test.mjs

# Node.js, npm and Chromium: installed with apt as root, else the command to
# run is printed and make stops.
e2e-tools:
	@$(E2E)/tools.sh

# The browser tests' dependencies (playwright-core, ws), pinned by the lock
# file: npm ci when node_modules is missing or older than the lock file.
$(E2E)/node_modules/.package-lock.json: $(E2E)/package-lock.json | e2e-tools
	cd $(E2E) && npm ci --no-audit --no-fund
	@touch $@

# staticcheck at a pinned version (2026.2.2, which knows Go 1.26), fetched
# through the Go module proxy and built into the Go cache on first use.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bench:
	$(GO) run ./bench -start $(BENCHFLAGS)

compare:
	$(GO) run ./bench -compare $(BENCHFLAGS)

# SOAKTIME of chat traffic (20 rooms, 3,000 connections, churn, a slow reader
# every 20 s) against a server the harness builds and starts; fails unless
# nothing is lost for healthy clients, the server cut off the slow readers
# and its memory and goroutines stayed flat. Reports go to bench/out/.
soak:
	@mkdir -p bench/out
	$(GO) run ./bench -start -scenario soak -duration $(SOAKTIME) -json bench/out/soak.json -html bench/out/soak.html $(BENCHFLAGS)

# Each fuzz target for FUZZTIME; prints inputs tried and fails on a crasher
# (saved under server/testdata/fuzz, where `go test` replays it from then on).
fuzz:
	@for target in FuzzDecode FuzzFrames; do \
		echo "== $$target for $(FUZZTIME)"; \
		$(GO) test ./server -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) > /tmp/noom-fuzz.log 2>&1; status=$$?; \
		grep -E '^fuzz: elapsed' /tmp/noom-fuzz.log | tail -1; grep -E -A20 '^--- FAIL' /tmp/noom-fuzz.log; \
		[ $$status -eq 0 ] || exit $$status; \
	done

# A three-node cluster by hand: a NATS server with JetStream (built from the
# module cache, nats-server/v2) and three noom nodes. Open any of the three
# pages; Ctrl-C stops everything. Node N serves http://127.0.0.1:808N and
# its admin listener (/metrics, and the console at /admin/ when
# NOOM_ADMIN_PASSWORD is set: NOOM_ADMIN_PASSWORD=... make cluster) on
# 127.0.0.1:909N.
NATS_PORT ?= 4222
cluster: build
	$(GO) build -o $(BIN)/nats-server github.com/nats-io/nats-server/v2
	@echo "NATS nats://127.0.0.1:$(NATS_PORT); nodes http://127.0.0.1:8081 http://127.0.0.1:8082 http://127.0.0.1:8083; metrics http://127.0.0.1:9091/metrics 9092 9093; console http://127.0.0.1:9091/admin/ (with NOOM_ADMIN_PASSWORD); media UDP 127.0.0.1:7881-7883"
	@trap 'kill $$(jobs -p) 2>/dev/null; wait' INT TERM; \
	$(BIN)/nats-server -a 127.0.0.1 -p $(NATS_PORT) -js -sd $${TMPDIR:-/tmp}/noom-cluster-nats & \
	sleep 1; \
	for n in 1 2 3; do $(BIN)/noom -addr 127.0.0.1:808$$n -admin-addr 127.0.0.1:909$$n -rtc-udp 127.0.0.1:788$$n -nats nats://127.0.0.1:$(NATS_PORT) $(FLAGS) & done; \
	wait

clean:
	rm -rf $(BIN)
