# tally: the two commands are `make demo` (run the demo) and `make test` (run every test).
GO        ?= go
FUZZTIME  ?= 10s
BENCHTIME ?= 1s

.PHONY: demo serve build test check unit fuzz bench

demo:
	$(GO) run ./cmd/tally demo

serve:
	$(GO) run ./cmd/tally serve

build:
	$(GO) build -o bin/tally ./cmd/tally

# Every test: static checks, unit and system tests, and a short run of every fuzz target.
test: check unit fuzz

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) build ./...

unit:
	$(GO) test -count=1 -timeout 20m ./...

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./...
