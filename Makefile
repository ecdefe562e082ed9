# The two front-door commands: `make run` and `make test`.
SWIFT ?= swift
CONFIG ?=

.PHONY: run test build release deps run-deps test-deps bench bench-h2-floor format lint clean fuzz

run: run-deps
	$(SWIFT) build -c release
	.build/release/ferry serve $(if $(CONFIG),--config $(CONFIG),)

test: test-deps
	python3 scripts/check-kubernetes.py
	python3 scripts/check-kubernetes.py --self-test
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --parallel --num-workers 2
	@# The hand-written HTTP/1 parsers, fuzzed for a bounded time (longer: `make fuzz FUZZ_SECONDS=600`).
	scripts/fuzz-head-parser.sh 20
	scripts/fuzz-body-framing.sh 20

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

deps:
	@scripts/install-deps.sh build

run-deps:
	@scripts/install-deps.sh run

test-deps:
	@scripts/install-deps.sh test

bench:
	@scripts/install-deps.sh bench
	Benchmarks/run.sh

# What swift-nio-http2 costs per request by itself (docs/benchmarks.md, "(h2) floor").
bench-h2-floor:
	cd Benchmarks/H2Floor && swift build -c release && taskset -c 1 .build/release/h2floor 50000

format:
	swift-format format --in-place --recursive Package.swift Sources Tests

lint:
	swift-format lint --recursive Sources Tests

clean:
	rm -rf .build

# The HTTP/1 head parser, then the body framing tracker, under libFuzzer for FUZZ_SECONDS each
# (crashes in .build-fuzz/crashes/).
FUZZ_SECONDS ?= 30
fuzz:
	scripts/fuzz-head-parser.sh $(FUZZ_SECONDS)
	scripts/fuzz-body-framing.sh $(FUZZ_SECONDS)
