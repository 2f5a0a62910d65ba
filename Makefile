# The two commands a newcomer needs: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
BIN     := bin/patchbay
RUNDIR  ?= .run
# When this `make` began: scripts/itest.sh runs a failed test again only if the whole of `make test`, provisioning a
# new machine included, still fits its 25 minutes.
ifndef PATCHBAY_TEST_START
export PATCHBAY_TEST_START := $(shell date +%s)
endif

.PHONY: all build provision test test-unit test-integration fuzz bench run stop vet fmt clean soak

all: build

build:
	$(GO) build -o $(BIN) ./cmd/patchbay

provision:
	scripts/provision.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags integration ./test/...
	@$(GO) mod tidy -diff >/dev/null || { echo "go mod tidy would change go.mod/go.sum: run it and commit"; exit 1; }

test-unit: provision
	$(GO) test -count=1 -race ./...

# Bounded fuzzing of what browsers and API callers feed us: the number router and the signalling decoder. Budgets
# are execution counts (about 20 s each on 2 cores), not durations: a duration races Go 1.26's fuzz coordinator at
# its deadline and fails with a bare "context deadline exceeded" and no input (go.dev/issue/75804).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzRoute -fuzztime 200000x ./dialplan
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 300000x ./webrtc/signal

# Integration tests run in lanes (scripts/itest.sh): separate processes side by side, each test one at a time in its
# lane. Full logs in /tmp/patchbay-integration/. `make test-integration LANES=.` runs everything in one lane.
test-integration: provision
	GO=$(GO) scripts/itest.sh

test: vet test-unit fuzz test-integration

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/relay ./webrtc/media ./webrtc/mmsg

# Long calls (not in `make test`): one SOAK_LONG call (60m) and SOAK_N (10) parallel SOAK_SHORT (10m) calls through
# a SIPp carrier that echoes and answers session refreshes; reports gaps in the audio (artifacts/soak-report.txt).
SOAK_LONG ?= 60m
SOAK_SHORT ?= 10m
SOAK_N ?= 10
soak: provision
	SOAK_LONG=$(SOAK_LONG) SOAK_SHORT=$(SOAK_SHORT) SOAK_N=$(SOAK_N) $(GO) test -tags soak -count=1 -timeout 0 -v -run TestSoak ./test/soak/ 2>&1 | tee /tmp/patchbay-soak.log | grep -vE 'level=(DEBUG|INFO)'; test $${PIPESTATUS[0]} -eq 0

run: provision build
	scripts/run.sh

stop:
	scripts/run.sh stop

clean:
	rm -rf bin

# End-to-end load test (root): fresh Asterisk + Patchbay pinned to CPU 0, `patchbay bench` on CPU 1, for each
# N in BENCH_N; tables and logs in /tmp/patchbay-bench. See docs/benchmarks.md.
BENCH_N ?= 1 50 200 450
.PHONY: bench-e2e
bench-e2e:
	scripts/bench.sh $(BENCH_N)
